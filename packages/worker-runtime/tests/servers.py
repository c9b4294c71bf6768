"""A Runtime's HTTP app served by uvicorn on a real loopback socket, inside the test's event
loop (so a test can count the tasks and subscriptions the server holds)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn

from worker_runtime import Runtime
from worker_runtime.http import HttpSettings, create_app

TOKEN = "stream-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Server(uvicorn.Server):
    """uvicorn without signal handling: the test owns the process."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


def free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    return sock


@asynccontextmanager
async def serve_app(
    app: Any,
    port: int = 0,
    *,
    before_stop: Callable[[], Awaitable[None]] | None = None,
    abort_connections: bool = False,
) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 (``port`` 0: a free one) in this event loop; yields the
    base URL. On exit ``before_stop`` runs, open connections are cut when
    ``abort_connections``, then the server stops."""
    sock = free_socket(port)
    # A bounded graceful shutdown: a stream whose connection was cut must not keep the server
    # (and the test) waiting for its task to notice.
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    server = _Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                if before_stop is not None:
                    await before_stop()
                if abort_connections:
                    # As in a crash: no new connection is accepted (a client must not
                    # reconnect to a server that is going away), then the open ones are cut.
                    for listener in server.servers:
                        listener.close()
                    for connection in list(server.server_state.connections):
                        connection.transport.abort()
                server.should_exit = True
    finally:
        sock.close()


@asynccontextmanager
async def serve(
    runtime: Runtime, port: int = 0, *, close_runtime: bool = True, **settings: Any
) -> AsyncIterator[str]:
    """Serve ``runtime`` on 127.0.0.1 (``port`` 0: a free one); yields the base URL. On exit the
    Runtime is closed first (streams get runtime_shutdown), then the server stops. Without
    ``close_runtime`` the Runtime stays open and open streams are dropped, as in a crash."""
    app = create_app(runtime, HttpSettings(token=TOKEN, **settings))
    async with serve_app(
        app,
        port,
        before_stop=runtime.close if close_runtime else None,
        abort_connections=not close_runtime,
    ) as url:
        yield url
