"""The Backend's aiohttp transport under RuntimeClient: real sockets that refuse, stall or
hang up. (Commands and streams through it against a real yoi-runtime: test_backend.py.)"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from worker_runtime import RuntimeUnavailable
from worker_runtime.client import RuntimeClient
from yoi_workspace_server._transport import AiohttpTransport

pytestmark = pytest.mark.anyio

TOKEN = "transport-test-token"


@contextmanager
def listener(behaviour: str) -> Iterator[int]:
    """A loopback socket that accepts and then stalls (``stall``) or closes at once
    (``hangup``)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if behaviour == "hangup":
                conn.recv(65536)
                conn.close()
            else:
                accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        done.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def runtime_at(behaviour: str) -> Iterator[int]:
    if behaviour == "refused":
        yield free_port()
    else:
        with listener(behaviour) as port:
            yield port


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("refused", "unreachable"), ("stall", "timeout"), ("hangup", "unreachable")],
)
async def test_refused_stalled_and_hung_up_runtimes_are_typed_unavailable(
    behaviour: str, reason: str
) -> None:
    """Through the transport, a refused connection is ``unreachable``, a runtime that never
    answers is ``timeout`` (commands and streams alike, within the client's timeouts), and
    one that hangs up mid-request is ``unreachable``; no message names the address."""
    with runtime_at(behaviour) as port:
        client = RuntimeClient(
            f"http://127.0.0.1:{port}",
            token=TOKEN,
            timeout_s=0.5,
            stream_idle_timeout_s=0.5,
            transport=AiohttpTransport(),
        )
        async with client:
            with anyio.fail_after(5), pytest.raises(RuntimeUnavailable) as command:
                await client.summary()
            with anyio.fail_after(5), pytest.raises(RuntimeUnavailable) as stream:
                async for _ in client.stream_events(worker_id="w1", max_attempts=1):
                    pass
    for caught in (command.value, stream.value):
        assert caught.details["reason"] == reason
        assert str(port) not in caught.message
