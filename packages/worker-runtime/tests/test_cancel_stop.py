"""Cancel, stop and Runtime close."""

from __future__ import annotations

import anyio
import pytest

from worker_runtime import Limits, RuntimeUnavailable, WorkerStopped
from worker_runtime.testing import EventCapture, ScriptedBackend, ScriptedTurn

from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio


async def test_cancel_mid_echo_commits_partial_text_and_returns_to_idle(
    open_runtime: OpenRuntime,
) -> None:
    """Cancelling a slow echo turn mid-way emits the partial assistant message and
    turn_cancelled, the ack names the turn and carries turn_cancelled's cursor, and the Worker
    is idle."""
    async with open_runtime() as rt:
        w = await create(rt, "slow-echo")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            ack = await rt.send_input(w.worker_ref, {"content": "a b c d e f g h i j"})
            await cap.wait_for("output_delta", count=2)
            cancel = await rt.cancel(w.worker_ref, reason="user pressed stop")
            cancelled = await cap.wait_for("turn_cancelled")
        assert cancel.cancelled_turn_id == ack.turn_id
        assert cancel.cursor == cancelled.cursor
        assert cancel.status == "idle"
        assert cancelled.data == {"reason": "user pressed stop"}
        message = cap.of_kind("message_completed")[0]
        assert message.data["partial"] is True
        deltas = "".join(e.data["text"] for e in cap.of_kind("output_delta"))
        assert message.data["content"] == deltas
        assert len(cap.of_kind("output_delta")) < 10
        assert cap.kinds.index("message_completed") < cap.kinds.index("turn_cancelled")
        page = await rt.read_transcript(w.worker_ref)
        assert page.items[-1].partial is True
        assert (await rt.get_worker(w.worker_ref)).overview.turns.cancelled == 1


async def test_cancel_really_cancels_the_backend_call(open_runtime: OpenRuntime) -> None:
    """Cancelling a turn whose backend hangs cancels the backend's own task, and the next
    queued input then runs."""
    backend = ScriptedBackend(ScriptedTurn.hang_after(), ScriptedTurn.reply("next"))
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        first = await rt.send_input(w.worker_ref, {"content": "one"})
        await backend.wait_started()
        queued = await rt.send_input(w.worker_ref, {"content": "two", "on_busy": "enqueue"})
        async with EventCapture(rt, worker=w.worker_ref, cursor=queued.cursor) as cap:
            ack = await rt.cancel(w.worker_ref)
            assert ack.cancelled_turn_id == first.turn_id
            assert backend.cancelled == [first.turn_id]
            done = await cap.wait_for("turn_completed")
        assert done.turn_id == queued.turn_id
        assert cap.kinds[0] == "turn_cancelled"
        assert "message_completed" not in cap.kinds[:1]


async def test_cancel_before_the_turn_task_runs_still_cancels_it(open_runtime: OpenRuntime) -> None:
    """A cancel issued right after the input ack, before the turn's task ran, cancels it."""
    backend = ScriptedBackend(ScriptedTurn.hang_after())
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        ack = await rt.send_input(w.worker_ref, {"content": "one"})
        cancel = await rt.cancel(w.worker_ref)
        assert cancel.cancelled_turn_id == ack.turn_id
        assert (await rt.get_worker(w.worker_ref)).status == "idle"


async def test_cancel_is_idempotent(open_runtime: OpenRuntime) -> None:
    """With no turn in flight, or a turn_id that already ended, cancel acks
    cancelled_turn_id=null with the head cursor and emits nothing."""
    async with open_runtime() as rt:
        w = await create(rt)
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            ack = await rt.send_input(w.worker_ref, {"content": "hi"})
            await cap.wait_for("turn_completed")
            before = len(cap.events)
            idle = await rt.cancel(w.worker_ref)
            ended = await rt.cancel(w.worker_ref, turn_id=ack.turn_id)
            await anyio.sleep(0.01)
            assert len(cap.events) == before
        assert idle.cancelled_turn_id is None
        assert ended.cancelled_turn_id is None
        assert idle.status == "idle"
        assert idle.cursor == (await rt.get_worker(w.worker_ref)).last_cursor


async def test_cancel_of_another_turn_id_leaves_the_running_turn_alone(
    open_runtime: OpenRuntime,
) -> None:
    """A cancel naming a turn that is not in flight changes nothing."""
    backend = ScriptedBackend(ScriptedTurn.hang_after())
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        await rt.send_input(w.worker_ref, {"content": "one"})
        ack = await rt.cancel(w.worker_ref, turn_id="turn_0000000000000000")
        assert ack.cancelled_turn_id is None
        assert ack.status == "running"


async def test_stop_discards_the_queue_and_is_idempotent(open_runtime: OpenRuntime) -> None:
    """Stop cancels the running turn, discards each queued input with input_discarded, emits
    worker_stopped once, and a second stop returns the same ack."""
    backend = ScriptedBackend(default=ScriptedTurn.hang_after("partial"))
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            first = await rt.send_input(w.worker_ref, {"content": "one"})
            q1 = await rt.send_input(w.worker_ref, {"content": "two", "on_busy": "enqueue"})
            q2 = await rt.send_input(w.worker_ref, {"content": "three", "on_busy": "enqueue"})
            await backend.wait_started()
            stop = await rt.stop_worker(w.worker_ref, reason="done here")
            again = await rt.stop_worker(w.worker_ref, reason="other")
            await cap.wait_for("worker_stopped")
            await anyio.sleep(0.01)
        assert stop == again
        assert stop.status == "stopped"
        tail = cap.kinds[cap.kinds.index("turn_cancelled") :]
        assert tail == ["turn_cancelled", "input_discarded", "input_discarded", "worker_stopped"]
        assert cap.of_kind("turn_cancelled")[0].turn_id == first.turn_id
        discarded = cap.of_kind("input_discarded")
        assert [e.turn_id for e in discarded] == [q1.turn_id, q2.turn_id]
        assert [e.data["transcript_sequence"] for e in discarded] == [
            q1.transcript_sequence,
            q2.transcript_sequence,
        ]
        assert cap.of_kind("worker_stopped")[0].cursor == stop.cursor
        assert backend.cancelled == [first.turn_id]
        assert len(backend.requests) == 1  # the queued inputs never ran


async def test_a_stopped_worker_refuses_input_and_cancel_is_a_no_op(
    open_runtime: OpenRuntime,
) -> None:
    """Input to a stopped Worker is worker_stopped; cancel on it changes nothing."""
    async with open_runtime() as rt:
        w = await create(rt)
        await rt.stop_worker(w.worker_ref)
        with pytest.raises(WorkerStopped):
            await rt.send_input(w.worker_ref, {"content": "hi"})
        with pytest.raises(WorkerStopped):
            await rt.send_input(w.worker_ref, {"content": "hi", "kind": "system"})
        ack = await rt.cancel(w.worker_ref)
        assert (ack.cancelled_turn_id, ack.status) == (None, "stopped")
        summary = await rt.summary()
        assert summary.counts.stopped == 1


async def test_concurrent_stops_return_one_ack(open_runtime: OpenRuntime) -> None:
    """Concurrent stops of one Worker all return the same ack and emit one worker_stopped."""
    backend = ScriptedBackend(default=ScriptedTurn.hang_after())
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        await rt.send_input(w.worker_ref, {"content": "one"})
        acks = []

        async def stop() -> None:
            acks.append(await rt.stop_worker(w.worker_ref))

        async with EventCapture(rt, worker=w.worker_ref) as cap:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(stop)
            await anyio.sleep(0.01)
        assert len({a.cursor for a in acks}) == 1
        assert cap.kinds.count("worker_stopped") == 1


async def test_close_interrupts_turns_that_outlast_the_grace_period(
    open_runtime: OpenRuntime,
) -> None:
    """On close, a turn that finishes within the grace period completes, one that outlasts it
    is interrupted (no transcript entry), queued inputs do not start, and commands are then
    runtime_unavailable."""
    backend = ScriptedBackend(
        ScriptedTurn.hang_after("partial"), ScriptedTurn.reply("quick", delay_s=0.05)
    )
    rt_ctx = open_runtime(scripted=backend, limits=Limits(shutdown_grace_s=0.3))
    async with rt_ctx as rt:
        slow = await create(rt, "scripted")
        fast = await create(rt, "scripted")
        sub = rt.subscribe(cursor=slow.last_cursor)
        await rt.send_input(slow.worker_ref, {"content": "slow"})
        await backend.wait_started()
        await rt.send_input(fast.worker_ref, {"content": "fast"})
        await rt.send_input(slow.worker_ref, {"content": "later", "on_busy": "enqueue"})
        await rt.close()
        events = [e async for e in sub]
        with pytest.raises(RuntimeUnavailable):
            await rt.send_input(fast.worker_ref, {"content": "again"})
        by_worker = {
            wid: [e.kind for e in events if e.worker_id == wid]
            for wid in (slow.worker_id, fast.worker_id)
        }
        assert by_worker[fast.worker_id][-1] == "turn_completed"
        assert by_worker[slow.worker_id][-1] == "turn_interrupted"
        assert "message_completed" not in by_worker[slow.worker_id]
        assert events[-1].kind == "diagnostic"
        assert events[-1].data["code"] == "runtime_shutdown"
        assert events[-1].cursor is None
        detail = await rt.get_worker(slow.worker_ref)
        assert detail.status == "idle"
        assert detail.queued_inputs == 1
        assert detail.overview.turns.interrupted == 1
        assert (await rt.summary()).status == "stopping"
