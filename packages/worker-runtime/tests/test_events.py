"""The event log, cursors, resume and subscriptions."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from worker_runtime import (
    CursorExpired,
    CursorMalformed,
    CursorUnknown,
    Event,
    Limits,
    RuntimeStore,
    WorkerNotFound,
)
from worker_runtime.testing import EventCapture

from . import helpers
from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio


async def _turn(rt, ref, text: str = "one two three") -> str:  # type: ignore[no-untyped-def]
    """Run one echo turn to completion; returns the cursor of its turn_completed event."""
    ack = await rt.send_input(ref, {"content": text})
    async with rt.subscribe(cursor=ack.cursor, worker=ref) as events:
        async for event in events:
            if event.kind == "turn_completed":
                return str(event.cursor)
    raise AssertionError("the turn did not complete")


async def test_runtime_started_opens_the_log_and_every_event_has_the_wire_shape(
    open_runtime: OpenRuntime,
) -> None:
    """The log starts with runtime_started {incarnation, recovered_turns}, and events carry
    {cursor, kind, runtime_id, worker_id, turn_id, at, data}."""
    async with open_runtime(default="slow-echo") as rt:
        page = await rt.read_events()
        first = page.events[0]
        assert first["kind"] == "runtime_started"
        summary = await rt.summary()
        assert first["data"] == {"incarnation": summary.incarnation, "recovered_turns": 0}
        assert set(first) == {"cursor", "kind", "runtime_id", "worker_id", "turn_id", "at", "data"}
        assert first["runtime_id"] == "rt-test"
        assert first["at"].endswith("Z")


async def test_resume_from_a_cursor_is_gap_free_and_exact(open_runtime: OpenRuntime) -> None:
    """Subscribing from any cursor delivers exactly the events after it, in order, once."""
    async with open_runtime() as rt:
        w = await create(rt)
        for i in range(3):
            await _turn(rt, w.worker_ref, f"turn {i} words")
        everything = (await rt.read_events(limit=1000)).events
        cursors = [e["cursor"] for e in everything]
        for index in (0, 3, len(cursors) // 2, len(cursors) - 2):
            seen: list[str] = []
            async with rt.subscribe(cursor=cursors[index]) as events:
                async for event in events:
                    seen.append(str(event.cursor))
                    if event.cursor == cursors[-1]:
                        break
            assert seen == cursors[index + 1 :]


async def test_no_cursor_means_new_events_only(open_runtime: OpenRuntime) -> None:
    """A subscription without a cursor starts with events emitted after it was opened."""
    async with open_runtime() as rt:
        w = await create(rt)
        await _turn(rt, w.worker_ref)
        async with EventCapture(rt) as cap:
            ack = await rt.send_input(w.worker_ref, {"content": "fresh"})
            await cap.wait_for("turn_completed")
        assert cap.events[0].cursor == ack.cursor


async def test_worker_subscription_carries_only_that_workers_events(
    open_runtime: OpenRuntime,
) -> None:
    """A per-Worker subscription delivers one Worker's events only, while the runtime-wide one
    sees both Workers in log order."""
    async with open_runtime() as rt:
        a = await create(rt, "slow-echo")
        b = await create(rt, "slow-echo")
        async with EventCapture(rt, worker=a.worker_ref) as only_a, EventCapture(rt) as every:
            await rt.send_input(a.worker_ref, {"content": "a1 a2 a3"})
            await rt.send_input(b.worker_ref, {"content": "b1 b2 b3"})
            await only_a.wait_for("turn_completed")
            await every.wait_for("turn_completed", count=2)
        assert {e.worker_id for e in only_a.events} == {a.worker_id}
        assert {e.worker_id for e in every.events} == {a.worker_id, b.worker_id}
        a_in_every = [e.cursor for e in every.events if e.worker_id == a.worker_id]
        assert a_in_every == [e.cursor for e in only_a.events]
        positions = [e.position for e in every.events]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)


async def test_cursor_errors_are_typed(open_runtime: OpenRuntime) -> None:
    """A non-cursor is cursor_malformed, another incarnation's cursor or one beyond the head
    is cursor_unknown, and an unknown Worker is worker_not_found, all before any event."""
    async with open_runtime() as rt1, open_runtime() as rt2:
        w = await create(rt1)
        for bad in ("", "garbage", "x" * 500, "abc-12", "../../etc", "é" * 16 + "-1", "\x00-1"):
            with pytest.raises(CursorMalformed):
                rt1.subscribe(cursor=bad)
        other = (await rt2.read_events()).events[0]["cursor"]
        with pytest.raises(CursorUnknown):
            rt1.subscribe(cursor=other)
        head = (await rt1.read_transcript(w.worker_ref)).cursor
        beyond = head[: head.rindex("-") + 1] + "ffff"
        with pytest.raises(CursorUnknown):
            rt1.subscribe(cursor=beyond)
        with pytest.raises(WorkerNotFound):
            rt1.subscribe(worker=rt1.ref("wkr_missing"))
        with pytest.raises(CursorMalformed):
            await rt1.read_events(cursor="nope")


async def test_expired_is_reported_only_for_a_proven_gap(store_kind: str, tmp_path: Path) -> None:
    """Once the backlog (memory) or the retained log (fs, pruned by retention) has dropped the
    events after a cursor, resuming from it is cursor_expired with details.oldest_cursor; a
    cursor whose events are all retained is not."""
    store: RuntimeStore | None = None
    if store_kind == "fs":
        from worker_runtime.store.fs import FsRuntimeStore

        store = FsRuntimeStore(
            tmp_path / "pruned",
            fsync="never",
            segment_max_events=4,
            max_segments=2,
            checkpoint_interval_s=0,
        )
    limits = Limits(runtime_event_window=16, event_backlog=8, shutdown_grace_s=0.2)
    async with helpers.open_runtime(limits=limits, store=store) as rt:
        w = await create(rt)
        quiet = await create(rt)
        old = w.last_cursor
        for _ in range(4):
            await _turn(rt, w.worker_ref, "a b")
        with pytest.raises(CursorExpired) as info:
            rt.subscribe(cursor=old)
        # The oldest cursor offered is itself resumable.
        await rt.subscribe(cursor=info.value.details["oldest_cursor"]).aclose()
        assert info.value.status == 410
        assert "oldest_cursor" in info.value.details
        with pytest.raises(CursorExpired):
            rt.subscribe(cursor=old, worker=w.worker_ref)
        # The quiet Worker's ring still holds everything after its own creation event, so a
        # Worker-scoped resume from an old cursor is exact, not expired.
        async with rt.subscribe(cursor=quiet.last_cursor, worker=quiet.worker_ref) as events:
            await rt.send_input(quiet.worker_ref, {"content": "late"})
            first = await events.__anext__()
        assert first.kind == "input_accepted"


async def test_a_slow_subscriber_blocks_nobody_and_never_skips(
    open_runtime: OpenRuntime, store_kind: str
) -> None:
    """A subscriber that stops reading does not slow the Runtime or a fast subscriber. When it
    falls behind the memory backlog it gets a resync_required notice and its stream ends; with
    the fs store it catches up from disk instead, missing nothing."""
    limits = Limits(runtime_event_window=32, event_backlog=16, shutdown_grace_s=0.2)
    async with open_runtime(limits=limits) as rt:
        w = await create(rt)
        slow = rt.subscribe()
        async with EventCapture(rt) as fast:
            for i in range(10):
                await _turn(rt, w.worker_ref, f"words {i} here")
            await fast.wait_for("turn_completed", count=10)
        if store_kind == "memory":
            seen: list[Event] = [e async for e in slow]
            assert seen[-1].kind == "diagnostic"
            assert seen[-1].data["code"] == "resync_required"
            assert seen[-1].cursor is None
            assert len(seen) == 1
        else:
            caught_up = []
            async for event in slow:
                caught_up.append(event.cursor)
                if len(caught_up) == len(fast.events):
                    break
            assert caught_up == [e.cursor for e in fast.events]


async def test_a_lagging_subscriber_catches_up_from_the_backlog(open_runtime: OpenRuntime) -> None:
    """A subscriber that is behind but still inside the backlog receives every event it
    missed, in order."""
    async with open_runtime() as rt:
        w = await create(rt)
        lagging = rt.subscribe(worker=w.worker_ref)
        for i in range(20):
            await _turn(rt, w.worker_ref, f"x{i}")
        kinds: list[str] = []
        async for event in lagging:
            kinds.append(event.kind)
            if kinds.count("turn_completed") == 20:
                break
        assert kinds.count("input_accepted") == 20
        await lagging.aclose()


async def test_read_events_pages_the_log(open_runtime: OpenRuntime) -> None:
    """read_events returns bounded pages that continue from next_cursor until the head."""
    async with open_runtime() as rt:
        w = await create(rt)
        await _turn(rt, w.worker_ref)
        collected: list[str] = []
        cursor = None
        while True:
            page = await rt.read_events(cursor=cursor, limit=3)
            if not page.events:
                break
            collected.extend(e["kind"] for e in page.events)
            cursor = page.next_cursor
        assert collected[0] == "runtime_started"
        assert collected[-1] == "turn_completed"
        worker_only = await rt.read_events(worker=w.worker_ref, limit=100)
        assert {e["worker_id"] for e in worker_only.events} == {w.worker_id}


async def test_subscribers_are_counted_and_released_on_close(open_runtime: OpenRuntime) -> None:
    """Open subscriptions show in the Runtime summary and closing one releases it at once."""
    async with open_runtime() as rt:
        subs = [rt.subscribe() for _ in range(5)]
        assert (await rt.summary()).subscribers == 5
        for sub in subs:
            await sub.aclose()
        assert (await rt.summary()).subscribers == 0


async def test_a_hundred_subscribers_each_receive_every_event(open_runtime: OpenRuntime) -> None:
    """With 100 concurrent subscribers, each receives every event of a turn in order."""
    async with open_runtime() as rt:
        w = await create(rt)
        results: list[list[str]] = []

        async def consume(sub) -> None:  # type: ignore[no-untyped-def]
            got: list[str] = []
            async for event in sub:
                got.append(event.kind)
                if event.kind == "turn_completed":
                    break
            results.append(got)

        subs = [rt.subscribe(worker=w.worker_ref) for _ in range(100)]
        async with anyio.create_task_group() as tg:
            for sub in subs:
                tg.start_soon(consume, sub)
            await anyio.lowlevel.checkpoint()
            await rt.send_input(w.worker_ref, {"content": "a b c d e"})
        assert len(results) == 100
        assert all(r == results[0] for r in results)
        assert results[0][0] == "input_accepted"
        assert results[0].count("output_delta") == 5


async def test_ready_hands_over_the_read_ahead_events_once(open_runtime: OpenRuntime) -> None:
    """Subscription.ready() returns the events already read that would come next, in order;
    the iterator then goes on after them, so each event is delivered exactly once."""
    async with open_runtime() as rt:
        w = await create(rt)
        sub = rt.subscribe(cursor=w.last_cursor, worker=w.worker_ref)
        await rt.send_input(w.worker_ref, {"content": "one two three"})
        await anyio.sleep(0.1)
        cursors: list[str | None] = []
        async with sub:
            async for event in sub:
                cursors.append(event.cursor)
                cursors.extend(e.cursor for e in sub.ready())
                if len(cursors) >= 7:
                    break
        page = await rt.read_events(cursor=w.last_cursor, worker=w.worker_ref, limit=100)
        assert cursors == [e["cursor"] for e in page.events]
        assert len(cursors) == 7
