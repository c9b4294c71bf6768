"""The Runtime itself speaks RuntimeAPI: worker_id strings or its own refs, keyword options,
events() as a stream."""

from __future__ import annotations

import pytest

from worker_runtime import WorkerRef, WrongRuntime
from worker_runtime.api import RuntimeAPI

from .helpers import open_runtime

pytestmark = pytest.mark.anyio


async def test_every_worker_verb_takes_a_worker_id_or_a_ref_of_this_runtime() -> None:
    """Each Worker verb accepts the worker_id string and the Runtime's own WorkerRef alike,
    and refuses a WorkerRef of another Runtime with wrong_runtime."""
    async with open_runtime() as rt:
        api: RuntimeAPI = rt
        worker = await api.create_worker()
        wid = worker.worker_id
        ack = await api.send_input(wid, {"content": "hi"})  # type: ignore[arg-type]
        assert ack.worker_ref == worker.worker_ref
        assert await api.get_worker(wid) == await rt.get_worker(worker.worker_ref)
        page = await api.read_transcript(wid, start=0, limit=10)
        assert page.total_items >= 1
        assert (await api.cancel(wid, reason="none running")).worker_ref == worker.worker_ref
        assert (await api.diagnostics(limit=1))[-1].code == "profile.default_echo"
        foreign = WorkerRef(runtime_id="elsewhere", worker_id=wid)
        for call in (
            lambda: rt.get_worker(foreign),
            lambda: rt.send_input(foreign, {"content": "x"}),
            lambda: rt.read_transcript(foreign),
            lambda: rt.cancel(foreign),
            lambda: rt.stop_worker(foreign),
        ):
            with pytest.raises(WrongRuntime):
                await call()
        stopped = await api.stop_worker(wid, reason="done")
        assert await api.stop_worker(wid) == stopped


async def test_events_is_an_event_stream_of_one_worker_or_all() -> None:
    """events(cursor=, worker_id=) is entered with async with and iterated, like subscribe."""
    async with open_runtime() as rt:
        worker = await rt.create_worker()
        other = await rt.create_worker()
        ack = await rt.send_input(worker.worker_id, {"content": "hello"})
        await rt.send_input(other.worker_id, {"content": "elsewhere"})
        seen = []
        async with rt.events(cursor=ack.cursor, worker_id=worker.worker_id) as stream:
            async for event in stream:
                assert event.worker_id == worker.worker_id
                seen.append(event.kind)
                if event.kind == "turn_completed":
                    break
        assert seen[0] == "turn_started"
        assert seen[-1] == "turn_completed"
        async with rt.events(cursor=worker.last_cursor) as stream:
            first = await stream.__anext__()
        assert first.cursor != worker.last_cursor
