"""Transcript reads: bounds, paging and the cursor watermark."""

from __future__ import annotations

import pytest

from worker_runtime import InvalidInput, Limits, LimitTooLarge

from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio


async def test_transcript_pages_are_bounded_and_continue_with_next_start(
    open_runtime: OpenRuntime,
) -> None:
    """Pages hold at most `limit` items, next_start continues them, and a start past the end
    returns no items and next_start null."""
    async with open_runtime() as rt:
        w = await create(rt)
        for i in range(7):
            await rt.send_input(w.worker_ref, {"content": f"note {i}", "kind": "system"})
        page = await rt.read_transcript(w.worker_ref, start=0, limit=3)
        assert [i.sequence for i in page.items] == [1, 2, 3]
        assert (page.total_items, page.next_start) == (7, 3)
        last = await rt.read_transcript(w.worker_ref, start=6, limit=3)
        assert [i.sequence for i in last.items] == [7]
        assert last.next_start is None
        past = await rt.read_transcript(w.worker_ref, start=50, limit=3)
        assert past.items == []
        assert past.next_start is None
        assert page.items[0].model_dump().keys() >= {
            "sequence",
            "turn_id",
            "role",
            "content",
            "cursor",
            "at",
        }


async def test_limits_over_the_maximum_are_refused_never_clamped(open_runtime: OpenRuntime) -> None:
    """A limit above max_transcript_items is limit_too_large; bad start or limit values are
    invalid_input."""
    async with open_runtime(limits=Limits(max_transcript_items=10)) as rt:
        w = await create(rt)
        with pytest.raises(LimitTooLarge) as info:
            await rt.read_transcript(w.worker_ref, limit=11)
        assert info.value.details["maximum"] == 10
        assert (await rt.read_transcript(w.worker_ref, limit=10)).limit == 10
        for bad in (0, -1):
            with pytest.raises(InvalidInput):
                await rt.read_transcript(w.worker_ref, limit=bad)
        with pytest.raises(InvalidInput):
            await rt.read_transcript(w.worker_ref, start=-1)


async def test_transcript_cursor_hands_off_to_a_subscription_with_no_gap(
    open_runtime: OpenRuntime,
) -> None:
    """Reading the transcript and then subscribing from its cursor misses nothing: the next
    turn's events all arrive, starting with its input."""
    async with open_runtime() as rt:
        w = await create(rt)
        await rt.send_input(w.worker_ref, {"content": "first", "kind": "system"})
        page = await rt.read_transcript(w.worker_ref)
        assert page.cursor == page.items[-1].cursor
        ack = await rt.send_input(w.worker_ref, {"content": "second"})
        async with rt.subscribe(cursor=page.cursor, worker=w.worker_ref) as events:
            first = await events.__anext__()
        assert first.cursor == ack.cursor
        assert first.data["transcript_sequence"] == 2
