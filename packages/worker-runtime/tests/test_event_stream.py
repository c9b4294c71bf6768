"""The SSE event stream (contract §4, §7) served by uvicorn on a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("sse_starlette", reason="the event-stream extra is not installed")
httpx = pytest.importorskip("httpx")

import anyio  # noqa: E402

from worker_runtime import InputRequest, Limits, Profile, Profiles, Runtime  # noqa: E402
from worker_runtime.testing import ScriptedBackend, ScriptedTurn  # noqa: E402

from .helpers import create, open_runtime  # noqa: E402
from .servers import AUTH, serve  # noqa: E402

pytestmark = pytest.mark.anyio


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


class Stream:
    """A raw SSE reader (heartbeat comments and the retry hint included)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> Message:
        message = Message()
        with anyio.fail_after(timeout):
            async for line in self._lines:
                if not line:
                    if message.comments or message.event or message.retry is not None:
                        return message
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    message.comments.append(value)
                elif name == "id":
                    message.id = value
                elif name == "event":
                    message.event = value
                elif name == "data":
                    message.data = json.loads(value)
                elif name == "retry":
                    message.retry = int(value)
        raise EOFError("the stream ended")

    async def event(self, timeout: float = 5.0) -> Message:
        """The next message that is an event (skips heartbeats and hints)."""
        while True:
            message = await self.next(timeout)
            if message.event is not None:
                return message

    async def until(self, kind: str, timeout: float = 5.0) -> list[Message]:
        out = []
        while True:
            message = await self.event(timeout)
            out.append(message)
            if message.event == kind:
                return out


@asynccontextmanager
async def stream(
    client: Any, path: str, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[Stream]:
    async with client.stream("GET", path, params=params, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        s = Stream(response)
        first = await s.next()
        assert first.retry is not None
        assert first.retry > 0
        yield s


@asynccontextmanager
async def http(url: str) -> AsyncIterator[Any]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as c:
        yield c


async def send(runtime: Runtime, worker_id: str, text: str) -> None:
    await runtime.send_input(runtime.ref(worker_id), InputRequest(content=text, on_busy="enqueue"))


async def test_a_stream_delivers_every_event_after_it_connects() -> None:
    """After the retry hint, each event of a turn arrives once, in order, as id/event/data,
    where id is the event's cursor and data the event's JSON."""
    async with open_runtime() as rt, serve(rt) as url, http(url) as c:
        wid = (await create(rt)).worker_id
        async with stream(c, "/v1/events") as s:
            await send(rt, wid, "hello stream")
            got = await s.until("turn_completed")
        kinds = [m.event for m in got]
        assert kinds == [
            "input_accepted",
            "turn_started",
            "output_delta",
            "output_delta",
            "message_completed",
            "turn_completed",
        ]
        for m in got:
            assert m.data is not None
            assert m.data["cursor"] == m.id
            assert m.data["kind"] == m.event
        page = await rt.read_events(cursor=None, worker=rt.ref(wid), limit=100)
        assert [e["cursor"] for e in page.events][-6:] == [m.id for m in got]


async def test_a_worker_stream_carries_only_that_workers_events() -> None:
    """With two Workers' turns interleaved, each Worker's stream sees its own events and no
    other's; the runtime-wide stream sees both, in log order."""
    async with open_runtime() as rt, serve(rt) as url, http(url) as c:
        a = (await create(rt)).worker_id
        b = (await create(rt)).worker_id
        async with (
            stream(c, f"/v1/workers/{a}/events") as sa,
            stream(c, f"/v1/workers/{b}/events") as sb,
            stream(c, "/v1/events") as sall,
        ):
            for i in range(3):
                await send(rt, a, f"a{i} x")
                await send(rt, b, f"b{i} y")
            got_a = [await sa.event() for _ in range(18)]
            got_b = [await sb.event() for _ in range(18)]
            got_all = [await sall.event() for _ in range(36)]
        assert {m.data["worker_id"] for m in got_a if m.data} == {a}
        assert {m.data["worker_id"] for m in got_b if m.data} == {b}
        everything = [e["cursor"] for e in (await rt.read_events(cursor=None, limit=1000)).events]
        start = everything.index(got_all[0].id)
        assert [m.id for m in got_all] == everything[start:]


async def test_resume_after_a_forced_disconnect_mid_turn_misses_and_repeats_nothing() -> None:
    """A client cut off mid-turn resumes from the last id it saw, by ?cursor= and by
    Last-Event-ID: the events it gets are exactly the rest of the log."""
    backend = ScriptedBackend(default=ScriptedTurn.reply(*[f"d{i} " for i in range(40)]))
    async with open_runtime(scripted=backend) as rt, serve(rt) as url, http(url) as c:
        wid = (await create(rt, "scripted")).worker_id
        for how in ("cursor", "last-event-id"):
            backend.push(ScriptedTurn.reply(*[f"d{i} " for i in range(40)], delay_s=0.005))
            async with stream(c, f"/v1/workers/{wid}/events") as s:
                await send(rt, wid, "go")
                first = [await s.event() for _ in range(10)]
            assert first[-1].event == "output_delta"  # cut off mid-turn
            last = first[-1].id
            assert last is not None
            if how == "cursor":
                ctx = stream(c, f"/v1/workers/{wid}/events", cursor=last)
            else:
                ctx = stream(c, f"/v1/workers/{wid}/events", headers={"Last-Event-ID": last})
            async with ctx as s:
                rest = await s.until("turn_completed")
            seen = [m.id for m in first + rest]
            assert len(seen) == len(set(seen))
            page = await rt.read_events(cursor=first[0].id, worker=rt.ref(wid), limit=1000)
            assert [m.id for m in first[1:] + rest] == [e["cursor"] for e in page.events]


async def test_cursor_and_worker_errors_are_plain_http_errors() -> None:
    """Bad cursors (in the query or in Last-Event-ID) and unknown Workers are answered with
    the error envelope before any stream starts."""
    limits = Limits(event_backlog=4, runtime_event_window=8, shutdown_grace_s=0.1)
    async with (
        open_runtime(limits=limits) as rt,
        open_runtime(runtime_id="other") as other,
        serve(rt) as url,
        http(url) as c,
    ):
        wid = (await create(rt)).worker_id
        old = (await rt.read_events(cursor=None, limit=1)).events[0]["cursor"]
        for i in range(4):
            await send(rt, wid, f"turn {i}")
        await anyio.sleep(0.1)
        foreign = (await create(other)).worker_id
        foreign_cursor = (await other.read_events(cursor=None, limit=1)).events[0]["cursor"]
        cases = [
            ("/v1/events", {"cursor": "nonsense"}, {}, 400, "cursor_malformed"),
            ("/v1/events", {}, {"Last-Event-ID": "nonsense"}, 400, "cursor_malformed"),
            ("/v1/events", {"cursor": foreign_cursor}, {}, 400, "cursor_unknown"),
            ("/v1/events", {"cursor": old}, {}, 410, "cursor_expired"),
            (f"/v1/workers/{wid}/events", {"cursor": old}, {}, 410, "cursor_expired"),
            (f"/v1/workers/{foreign}/events", {}, {}, 404, "worker_not_found"),
            ("/v1/workers/%00x/events", {}, {}, 400, "invalid_input"),
            ("/v1/workers/" + "ü" * 300 + "/events", {}, {}, 400, "invalid_input"),
            ("/v1/events", {"cursor": "x" * 5000}, {}, 400, "invalid_input"),
        ]
        for path, params, headers, status, code in cases:
            response = await c.get(path, params=params, headers=headers)
            assert response.status_code == status, (path, params, response.text)
            body = response.json()
            assert body["error"]["code"] == code
            if code == "cursor_expired":
                assert "oldest_cursor" in body["error"]["details"]
        assert (
            await c.get("/v1/events", headers={"Authorization": "Bearer no"})
        ).status_code == 401


async def test_an_idle_stream_gets_heartbeats() -> None:
    """With nothing to say, the stream sends a comment heartbeat at the configured interval."""
    async with (
        open_runtime() as rt,
        serve(rt, heartbeat_s=0.1) as url,
        http(url) as c,
        stream(c, "/v1/events") as s,
    ):
        message = await s.next(timeout=2)
        assert message.comments == ["heartbeat"]
        assert message.event is None


async def test_shutdown_ends_every_stream_with_runtime_shutdown() -> None:
    """When the Runtime closes, each open stream gets a final runtime_shutdown diagnostic and
    ends."""
    async with (
        open_runtime() as rt,
        serve(rt) as url,
        http(url) as c,
        stream(c, "/v1/events") as s,
    ):
        await rt.close()
        last = await s.event()
        assert last.event == "diagnostic"
        assert last.id is None
        assert last.data is not None
        assert last.data["data"]["code"] == "runtime_shutdown"
        with pytest.raises(EOFError):
            await s.next()


async def test_one_hundred_subscribers_each_get_every_event_of_a_turn() -> None:
    """100 concurrent streams each receive the whole turn, in order."""
    async with open_runtime() as rt, serve(rt) as url, http(url) as c:
        wid = (await create(rt)).worker_id
        results: list[list[str | None]] = []
        ready = anyio.Event()
        connected = 0

        async def subscriber() -> None:
            nonlocal connected
            async with stream(c, f"/v1/workers/{wid}/events") as s:
                connected += 1
                if connected == 100:
                    ready.set()
                got = await s.until("turn_completed", timeout=20)
                results.append([m.id for m in got])

        limits = httpx.Limits(max_connections=200)
        async with (
            httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=20) as c,
            anyio.create_task_group() as tg,
        ):
            for _ in range(100):
                tg.start_soon(subscriber)
            with anyio.fail_after(20):
                await ready.wait()
            assert (await rt.summary()).subscribers == 100
            await send(rt, wid, "one two three four five")
        assert len(results) == 100
        assert all(r == results[0] for r in results)
        assert len(results[0]) == 9


async def test_connect_disconnect_cycles_leave_nothing_behind() -> None:
    """200 streams opened and dropped leave no subscription and no server task behind."""
    async with open_runtime() as rt, serve(rt) as url, http(url) as c:
        wid = (await create(rt)).worker_id

        async def settle() -> int:
            for _ in range(100):
                await anyio.sleep(0.02)
                if (await rt.summary()).subscribers == 0:
                    break
            return len(asyncio.all_tasks())

        async with stream(c, "/v1/events"):
            pass
        baseline = await settle()
        for i in range(200):
            path = "/v1/events" if i % 2 else f"/v1/workers/{wid}/events"
            async with stream(c, path):
                pass
        assert await settle() <= baseline
        assert (await rt.summary()).subscribers == 0


async def test_streams_over_the_cap_get_503_with_a_reason() -> None:
    """Above max_streams a new stream is refused with runtime_unavailable; closing one frees
    its slot."""
    async with open_runtime() as rt, serve(rt, max_streams=2) as url, http(url) as c:
        async with stream(c, "/v1/events"), stream(c, "/v1/events"):
            response = await c.get("/v1/events")
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "runtime_unavailable"
            assert error["details"]["reason"] == "too_many_streams"
        for _ in range(50):
            await anyio.sleep(0.02)
            if (await rt.summary()).subscribers == 0:
                break
        async with stream(c, "/v1/events"):
            pass


@pytest.mark.parametrize("store_kind", ["memory", "fs"])
async def test_a_slow_consumer_never_stalls_others(store_kind: str, tmp_path: Any) -> None:
    """A client that stops reading does not hold up the Runtime or a second client. With the
    fs store it then catches up from disk; with the memory store it gets resync_required and
    the stream ends."""
    if store_kind == "fs":
        pytest.importorskip("orjson")
        from worker_runtime.store.fs import FsRuntimeStore

        store: Any = FsRuntimeStore(tmp_path / "data")
    else:
        store = None
    limits = Limits(
        event_backlog=64,
        runtime_event_window=256,
        max_input_bytes=32_000_000,
        shutdown_grace_s=0.1,
    )
    paced = Profiles([Profile(name="paced", provider="echo", chunk_delay_ms=4)])
    async with (
        Runtime(runtime_id="slow", limits=limits, store=store, profiles=paced) as rt,
        serve(rt) as url,
        http(url) as c,
    ):
        wid = (await create(rt, "paced")).worker_id
        # 800 deltas of 30 kB: far more than the window and than the socket buffers can hide.
        big = " ".join(f"{i:05d}" + "x" * 30_000 for i in range(800))
        async with stream(c, "/v1/events") as slow, stream(c, "/v1/events") as fast:
            await send(rt, wid, big)
            fast_got = await fast.until("turn_completed", timeout=30)
            assert len(fast_got) > 800
            slow_got = []
            while True:
                message = await slow.event(timeout=30)
                slow_got.append(message)
                if message.event in ("turn_completed", "diagnostic"):
                    break
        if store_kind == "fs":
            assert [m.id for m in slow_got] == [m.id for m in fast_got]
        else:
            assert slow_got[-1].data is not None
            assert slow_got[-1].data["data"]["code"] == "resync_required"
            assert len(slow_got) < len(fast_got)


async def test_without_the_stream_the_routes_are_not_served() -> None:
    """event_stream=False serves the commands only: the SSE routes are unknown routes."""
    async with open_runtime() as rt, serve(rt, event_stream=False) as url, http(url) as c:
        response = await c.get("/v1/events")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert (await c.get("/v1/runtime")).status_code == 200
