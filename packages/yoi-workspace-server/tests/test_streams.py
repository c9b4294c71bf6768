"""A Worker's event stream through the Backend (its app served in process on a real loopback
socket, so responses stream): Backend cursors, resume across a remote's restart, and the
final ``runtime_shutdown`` when a remote is removed or the Backend shuts down."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from yoi_workspace_server.cursors import unwrap_cursor

from . import _asgi as _h

pytestmark = pytest.mark.anyio


EMB, backend, error, register = _h.EMB, _h.backend, _h.error, _h.register


sse = _h.sse


@asynccontextmanager
async def served_backend(**fields: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with _h.Backend(_h.settings(**fields)) as b, _h.served_app(b.app) as url:
        headers = {"Authorization": f"Bearer {_h.TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as client:
            yield b, client


async def test_the_embedded_workers_stream() -> None:
    """From a Backend cursor, a Worker's stream carries its turn (the deltas spell the input)
    with a Backend cursor as every message's id, up to turn_completed."""
    async with served_backend() as (_, c):
        worker = (await c.post(f"{EMB}/workers", json={})).json()["worker"]
        wid, cursor = worker["worker_id"], worker["last_cursor"]
        assert (await c.post(f"{EMB}/workers/{wid}/input", json={"content": "hi b"})).is_success
        events = await sse(c, f"{EMB}/workers/{wid}/events", "turn_completed", cursor=cursor)
        deltas = [e["data"]["data"]["text"] for e in events if e["data"]["kind"] == "output_delta"]
        assert "".join(deltas) == "hi b"
        assert all(e["id"].startswith("b1.") for e in events)
        assert events[-1]["data"]["kind"] == "turn_completed"


async def test_a_remote_stream_resumes_across_the_remotes_restart(tmp_path: Path) -> None:
    """A remote Worker's stream from a Backend cursor reaches turn_completed; after the
    remote restarts (same store, same address), the stream resumes from the last Backend
    cursor with the next turn's input_accepted first; another runtime's cursor on its route is
    cursor_unknown."""
    root = tmp_path / "remote"
    port = _free_port()

    def remote() -> Any:
        store = _h.FsRuntimeStore(root, fsync="never")
        return _h.Runtime(
            runtime_id="remote-a", store=store, limits=_h.Limits(shutdown_grace_s=0.2)
        )

    async with served_backend() as (_, c):
        rbase = "/api/runtimes/remote-a"
        async with remote() as rt, _h.served(rt, port=port) as url:
            assert (await register(c, "remote-a", url)).status_code == 201
            worker = (await c.post(f"{rbase}/workers", json={})).json()["worker"]
            rwid, cursor = worker["worker_id"], worker["last_cursor"]
            await c.post(f"{rbase}/workers/{rwid}/input", json={"content": "one"})
            events = await sse(c, f"{rbase}/workers/{rwid}/events", "turn_completed", cursor=cursor)
            last = events[-1]["id"]
            emb = (await c.post(f"{EMB}/workers", json={})).json()["worker"]["last_cursor"]
            error(await c.get(f"{rbase}/workers/{rwid}/events", params={"cursor": emb}), 400,
                  "cursor_unknown")  # fmt: skip
        async with remote() as rt, _h.served(rt, port=port):
            with anyio.fail_after(15):
                while (await c.get(rbase)).json()["runtime"]["status"] != "running":
                    await anyio.sleep(0.05)
            await c.post(f"{rbase}/workers/{rwid}/input", json={"content": "two"})
            resumed = await sse(c, f"{rbase}/workers/{rwid}/events", "turn_completed", cursor=last)
            kinds = [e["data"]["kind"] for e in resumed]
            assert kinds[0] == "input_accepted"
            assert kinds[-1] == "turn_completed"


async def _stream_ends_with_shutdown(c: httpx.AsyncClient, path: str, end: Any) -> None:
    """Open ``path``'s stream, call ``end()``, and check the stream's last message is a
    runtime_shutdown notice."""
    lines: list[str] = []
    with anyio.fail_after(20):
        async with c.stream("GET", path) as response:
            it = response.aiter_lines()
            assert (await anext(it)).startswith("retry:")
            await end()
            async for line in it:
                lines.append(line)
    assert any('"code":"runtime_shutdown"' in line for line in lines), lines


async def test_a_remote_stream_ends_when_the_remote_is_removed_or_the_backend_stops() -> None:
    """Removing a remote with a browser stream open ends that stream with runtime_shutdown;
    so does the Backend's shut_down (SIGTERM) with a remote's stream open."""
    async with _h.remote_runtime() as (_, url), served_backend() as (b, c):
        rbase = "/api/runtimes/remote-a"
        assert (await register(c, "remote-a", url)).status_code == 201
        rwid = (await c.post(f"{rbase}/workers", json={})).json()["worker"]["worker_id"]

        async def remove() -> None:
            assert (await c.delete(rbase)).status_code == 200

        await _stream_ends_with_shutdown(c, f"{rbase}/workers/{rwid}/events", remove)
        error(await c.get(rbase), 404, "runtime_not_found")
        assert (await register(c, "remote-a", url)).status_code == 201
        await _stream_ends_with_shutdown(c, f"{rbase}/workers/{rwid}/events", b.shut_down)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_expired_cursor_names_the_oldest_event_as_a_backend_cursor() -> None:
    """A Worker stream resumed from a cursor the Runtime no longer holds is 410
    cursor_expired whose ``details.oldest_cursor`` is a Backend cursor of that runtime (it
    resumes the stream), never the Runtime's own cursor."""
    limits = _h.Limits(event_backlog=4, runtime_event_window=4)
    async with served_backend(runtime_limits=limits) as (_, c):
        worker = (await c.post(f"{EMB}/workers", json={})).json()["worker"]
        wid, cursor = worker["worker_id"], worker["last_cursor"]
        assert (
            await c.post(f"{EMB}/workers/{wid}/input", json={"content": "a b c d e f"})
        ).is_success
        with anyio.fail_after(10):
            while (await c.get(f"{EMB}/workers/{wid}")).json()["worker"]["status"] != "idle":
                await anyio.sleep(0.01)
        body = error(
            await c.get(f"{EMB}/workers/{wid}/events", params={"cursor": cursor}),
            410,
            "cursor_expired",
        )
        oldest = body["details"]["oldest_cursor"]
        assert oldest.startswith("b1.")
        assert unwrap_cursor("backend-internal", oldest) != oldest
        async with c.stream(
            "GET", f"{EMB}/workers/{wid}/events", params={"cursor": oldest}
        ) as resumed:
            assert resumed.status_code == 200
