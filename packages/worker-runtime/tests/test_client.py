"""worker_runtime.client against a real server: every command, typed errors, and an event
stream that survives disconnects and restarts of the runtime process."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx_sse", reason="the event-stream extra is not installed")
pytest.importorskip("sse_starlette", reason="the event-stream extra is not installed")

import anyio

from worker_runtime import (
    CreateWorkerRequest,
    CursorExpired,
    CursorMalformed,
    CursorUnknown,
    Event,
    InputRequest,
    InvalidInput,
    Limits,
    RuntimeUnavailable,
    Unauthorized,
    WorkerBusy,
    WorkerNotFound,
)
from worker_runtime.client import RuntimeClient
from worker_runtime.testing import ScriptedBackend, ScriptedTurn

from .helpers import open_runtime
from .servers import TOKEN, serve

pytestmark = pytest.mark.anyio


async def test_the_client_covers_every_command() -> None:
    """Each REST command is a typed method returning the library's own models."""
    async with open_runtime() as rt, serve(rt) as url, RuntimeClient(url, token=TOKEN) as c:
        assert await c.health()
        assert (await c.summary()).runtime_id == rt.runtime_id
        created = await c.create_worker(CreateWorkerRequest(name="client"))
        wid = created.worker_id
        assert (await c.get_worker(wid)).name == "client"
        assert [w.worker_id for w in (await c.list_workers(limit=10)).workers] == [wid]
        ack = await c.send_input(wid, InputRequest(content="hi there"))
        assert ack.turn_id
        with anyio.fail_after(5):
            while (await c.get_worker(wid)).status != "idle":
                await anyio.sleep(0.01)
        page = await c.read_transcript(wid, start=0, limit=10)
        assert [i.role for i in page.items] == ["user", "assistant"]
        cancel = await c.cancel(wid)
        assert cancel.cancelled_turn_id is None
        assert (await c.stop_worker(wid, reason="done")).worker_ref.worker_id == wid
        assert isinstance(await c.diagnostics(limit=5), list)


async def test_errors_come_back_as_the_library_exceptions() -> None:
    """The envelope's code picks the exception class the library itself raises."""
    backend = ScriptedBackend(default=ScriptedTurn.hang_after("x"))
    async with (
        open_runtime(scripted=backend) as rt,
        serve(rt) as url,
        RuntimeClient(url, token=TOKEN) as c,
    ):
        wid = (
            await c.create_worker(
                CreateWorkerRequest.model_validate(
                    {"profile": {"kind": "named", "name": "scripted"}}
                )
            )
        ).worker_id
        await c.send_input(wid, InputRequest(content="first"))
        await backend.wait_started()
        with pytest.raises(WorkerBusy) as busy:
            await c.send_input(wid, InputRequest(content="second"))
        assert busy.value.details["active_turn_id"]
        with pytest.raises(WorkerNotFound):
            await c.get_worker("no-such-worker")
        with pytest.raises(InvalidInput):
            await c.get_worker("../etc")
        with pytest.raises(InvalidInput):
            await c.list_workers(status="weird")
    async with RuntimeClient(url, token="wrong") as bad:
        with pytest.raises(RuntimeUnavailable) as down:  # the server is gone by now
            await bad.summary()
        assert down.value.details["reason"] == "unreachable"


async def test_a_wrong_token_is_unauthorized_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong token is Unauthorized; neither token appears in repr or logs."""
    caplog.set_level(logging.DEBUG)
    async with open_runtime() as rt, serve(rt) as url:
        async with RuntimeClient(url, token="wrong-secret-value") as bad:
            assert "wrong-secret-value" not in repr(bad)
            with pytest.raises(Unauthorized):
                await bad.summary()
            with pytest.raises(Unauthorized):
                async with aclosing(bad.stream_events()) as events:
                    await anext(events)
        async with RuntimeClient(url, token=TOKEN) as good:
            assert TOKEN not in repr(good)
            assert "***" in repr(good)
            await good.summary()
    assert "wrong-secret-value" not in caplog.text
    assert TOKEN not in caplog.text


async def test_stream_errors_are_typed_and_not_retried() -> None:
    """Malformed, unknown and expired cursors and unknown Workers raise at once."""
    limits = Limits(event_backlog=2, runtime_event_window=4, shutdown_grace_s=0.1)
    async with (
        open_runtime(limits=limits) as rt,
        open_runtime(runtime_id="elsewhere") as other,
        serve(rt) as url,
        RuntimeClient(url, token=TOKEN) as c,
    ):
        wid = (await c.create_worker()).worker_id
        old = (await rt.read_events(cursor=None, limit=1)).events[0]["cursor"]
        for i in range(3):
            await c.send_input(wid, InputRequest(content=f"turn {i}", on_busy="enqueue"))
        await anyio.sleep(0.1)
        await other.create_worker()
        foreign = (await other.read_events(cursor=None, limit=1)).events[0]["cursor"]
        cases: list[tuple[dict[str, Any], type[Exception]]] = [
            ({"cursor": "garbage"}, CursorMalformed),
            ({"cursor": foreign}, CursorUnknown),
            ({"cursor": old}, CursorExpired),
            ({"worker_id": "missing"}, WorkerNotFound),
        ]
        for kwargs, error in cases:
            with anyio.fail_after(5), pytest.raises(error):
                async with aclosing(c.stream_events(**kwargs)) as events:
                    await anext(events)


@pytest.mark.parametrize("outage_notices", [False, True])
async def test_stream_events_reconnects_without_gaps_or_repeats(outage_notices: bool) -> None:
    """When the server drops the connection mid-turn, the client reconnects from its last
    cursor: the consumer sees each event exactly once, in log order; with outage_notices it
    is also told once that the runtime was lost."""
    backend = ScriptedBackend(default=ScriptedTurn.reply(*[f"w{i} " for i in range(60)]))
    async with open_runtime(scripted=backend) as rt:
        body = {"profile": {"kind": "named", "name": "scripted"}}
        wid = (await rt.create_worker(body)).worker_id
        port = _free_port()
        got: list[Event] = []
        async with anyio.create_task_group() as tg:

            async def consume(client: RuntimeClient) -> None:
                stream = client.stream_events(
                    worker_id=wid, backoff_s=0.05, outage_notices=outage_notices
                )
                async with aclosing(stream) as ev:
                    async for event in ev:
                        got.append(event)
                        if len([e for e in got if e.kind == "turn_completed"]) == 2:
                            return

            client = RuntimeClient(f"http://127.0.0.1:{port}", token=TOKEN)
            async with serve(rt, port, close_runtime=False):
                tg.start_soon(consume, client)
                await anyio.sleep(0.2)
                backend.push(ScriptedTurn.reply(*[f"a{i} " for i in range(60)], delay_s=0.003))
                await rt.send_input(rt.ref(wid), InputRequest(content="one"))
                with anyio.fail_after(5):
                    while len(got) < 20:
                        await anyio.sleep(0.005)
            # The server is gone mid-turn; the turn goes on. Serve again on the same port.
            backend.push(ScriptedTurn.reply(*[f"b{i} " for i in range(10)]))
            await rt.send_input(rt.ref(wid), InputRequest(content="two", on_busy="enqueue"))
            async with serve(rt, port, close_runtime=False):
                with anyio.fail_after(15):
                    while len([e for e in got if e.kind == "turn_completed"]) < 2:
                        await anyio.sleep(0.01)
            await client.aclose()
        notices = [e.data["code"] for e in got if e.cursor is None]
        assert notices == (["runtime_unavailable"] if outage_notices else [])
        cursors = [e.cursor for e in got if e.cursor is not None]
        assert len(cursors) == len(set(cursors))
        page = await rt.read_events(cursor=cursors[0], worker=rt.ref(wid), limit=1000)
        assert cursors[1:] == [e["cursor"] for e in page.events][: len(cursors) - 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a real yoi-runtime process, restarted -------------------------------------------------

CLI = [sys.executable, "-m", "worker_runtime.cli"]


@contextmanager
def runtime_process(port: int, data: Path, token_file: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            *CLI,
            "--bind",
            f"127.0.0.1:{port}",
            "--store",
            "fs",
            "--data-dir",
            str(data),
            "--token-file",
            str(token_file),
            "--shutdown-grace-s",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_the_client_resumes_across_a_restart_of_the_runtime_process(
    tmp_path: Path,
) -> None:
    """A yoi-runtime process (fs store) is stopped and started again on the same port: the
    client's stream delivers runtime_shutdown, reconnects from its last cursor, and goes on
    with the events after the restart; no event is lost or repeated."""
    pytest.importorskip("orjson")
    data, token_file = tmp_path / "data", tmp_path / "token"
    token_file.write_text(TOKEN)
    port = _free_port()
    got: list[Event] = []
    with runtime_process(port, data, token_file) as proc:
        client = RuntimeClient(f"http://127.0.0.1:{port}", token=TOKEN)
        wid = (await client.create_worker()).worker_id
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                stream = client.stream_events(worker_id=wid, backoff_s=0.05, max_backoff_s=0.2)
                async with aclosing(stream) as events:
                    async for event in events:
                        got.append(event)
                        if sum(e.kind == "turn_completed" for e in got) == 2:
                            return

            tg.start_soon(consume)
            await anyio.sleep(0.3)
            await client.send_input(wid, InputRequest(content="before restart"))
            with anyio.fail_after(10):
                while not any(e.kind == "turn_completed" for e in got):
                    await anyio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(proc.wait)
            with runtime_process(port, data, token_file):
                await client.send_input(wid, InputRequest(content="after restart"))
                with anyio.fail_after(15):
                    while sum(e.kind == "turn_completed" for e in got) < 2:
                        await anyio.sleep(0.02)
        await client.aclose()
    from worker_runtime import Runtime
    from worker_runtime.store.fs import FsRuntimeStore

    async with Runtime(runtime_id="local", store=FsRuntimeStore(data)) as rt:
        page = await rt.read_events(cursor=None, worker=rt.ref(wid), limit=1000)
        logged = [e["cursor"] for e in page.events]
    notices = [e for e in got if e.cursor is None]
    assert [n.data["code"] for n in notices] == ["runtime_shutdown"]
    cursors = [e.cursor for e in got if e.cursor is not None]
    assert len(cursors) == len(set(cursors))
    assert cursors == logged[logged.index(cursors[0]) :]
