"""The turn runner: accepting input, one turn at a time, exactly one terminal event each."""

from __future__ import annotations

import anyio
import pytest

from worker_runtime import InputRequest, Profile, WorkerBusy, WorkerStopped
from worker_runtime._turnrunner import IDLE_TASKS
from worker_runtime.execution import ContextMessage
from worker_runtime.testing import ScriptedBackend, ScriptedTurn

from .parts import open_parts

pytestmark = pytest.mark.anyio

SCRIPTED = Profile(name="scripted", provider="scripted")
TERMINAL = {"turn_completed", "turn_failed", "turn_cancelled", "turn_interrupted"}


async def test_system_input_joins_the_history_without_starting_a_turn() -> None:
    """A system input is acknowledged with no turn and becomes context for the next turn."""
    async with open_parts() as parts:
        w = parts.new_worker()
        ack = parts.runner.accept(w, InputRequest(kind="system", content="be brief"))
        assert (ack.turn_id, ack.queued, ack.status, ack.transcript_sequence) == (
            None,
            False,
            "idle",
            1,
        )
        assert w.turn is None
        assert w.history == [ContextMessage("system", "be brief")]


async def test_inputs_queue_behind_the_running_turn_and_run_in_order() -> None:
    """A user input starts a turn; while it runs another is queued (or refused with
    on_busy=reject); each turn ends with exactly one terminal event, then the next starts."""
    scripted = ScriptedBackend(ScriptedTurn.reply("one", delay_s=0.05), ScriptedTurn.reply("two"))
    async with open_parts(backends={"scripted": scripted}) as parts:
        w = parts.new_worker(SCRIPTED)
        head = parts.journal.log.head
        first = parts.runner.accept(w, InputRequest(content="a"))
        assert (first.queued, first.status) == (False, "running")
        with pytest.raises(WorkerBusy):
            parts.runner.accept(w, InputRequest(content="x", on_busy="reject"))
        second = parts.runner.accept(w, InputRequest(content="b", on_busy="enqueue"))
        assert second.queued
        assert w.queued == 1
        await parts.journal.commit()
        with anyio.fail_after(5):
            while w.state.completed < 2:
                await anyio.sleep(0.01)
        assert [r.turn_id for r in scripted.requests] == [first.turn_id, second.turn_id]
        events = parts.journal.log.read_after(head, 100)
        terminal = [(e.turn_id, e.kind) for e in events if e.kind in TERMINAL]
        assert terminal == [(first.turn_id, "turn_completed"), (second.turn_id, "turn_completed")]
        assert (w.state.turns_total, w.state.completed, w.status, w.queued) == (2, 2, "idle", 0)
        assert [m.content for m in w.history or []] == ["a", "one", "b", "two"]


async def test_a_cancelled_turn_commits_its_partial_text() -> None:
    """A turn cancelled mid-stream commits its text so far as a partial message, then ends
    with turn_cancelled and its reason."""
    scripted = ScriptedBackend(ScriptedTurn.hang_after("part"))
    async with open_parts(backends={"scripted": scripted}) as parts:
        w = parts.new_worker(SCRIPTED)
        head = parts.journal.log.head
        parts.runner.accept(w, InputRequest(content="go"))
        await scripted.wait_started()
        turn = w.turn
        assert turn is not None
        with anyio.fail_after(5):
            while not any(e.kind == "output_delta" for e in parts.journal.log.read_after(head, 9)):
                await anyio.sleep(0.01)
        turn.cancel_reason = "enough"
        turn.scope.cancel()
        await turn.done.wait()
        kinds = [(e.kind, e.data) for e in parts.journal.log.read_after(head, 100)][-2:]
        assert kinds[0][0] == "message_completed"
        assert kinds[0][1]["partial"] is True
        assert kinds[1] == ("turn_cancelled", {"reason": "enough"})
        assert (w.state.cancelled, w.status) == (1, "idle")


async def test_a_stopping_worker_refuses_input() -> None:
    """Input to a Worker whose stop is under way is refused with worker_stopped."""
    async with open_parts() as parts:
        w = parts.new_worker()
        w.stop_done = anyio.Event()
        with pytest.raises(WorkerStopped):
            parts.runner.accept(w, InputRequest(content="late"))


async def test_a_turn_open_at_a_crash_is_interrupted_once() -> None:
    """interrupt_recovered ends a recovered open turn with turn_interrupted (runtime_restart)."""
    from worker_runtime._worker import Turn

    async with open_parts() as parts:
        w = parts.new_worker()
        parts.journal.emit(
            "input_accepted",
            w,
            "turn_old",
            {"input_kind": "user", "content": "hi", "transcript_sequence": 1, "queued": False},
        )
        w.turn = Turn("turn_old", 1, 0.0, 0)
        parts.runner.interrupt_recovered(w)
        parts.runner.interrupt_recovered(w)  # nothing left to interrupt
        assert (w.turn, w.state.interrupted, w.status) == (None, 1, "idle")


async def test_turn_tasks_run_later_turns_and_end_when_the_runner_closes() -> None:
    """Turns started after earlier ones settled, on more Workers than the runner keeps
    waiting tasks for, all complete in order, and closing the runner lets its task group
    exit."""
    with anyio.fail_after(10):
        async with open_parts() as parts:
            workers = [parts.new_worker() for _ in range(IDLE_TASKS + 8)]
            for round_ in (1, 2, 3):
                acks = [parts.runner.accept(w, InputRequest(content=f"r{round_}")) for w in workers]
                assert all(not ack.queued for ack in acks)
                await parts.journal.commit()
                while any(w.state.completed < round_ for w in workers):
                    await anyio.sleep(0.01)
            for w in workers:
                assert [m.content for m in w.history or []] == ["r1", "r1", "r2", "r2", "r3", "r3"]
                assert (w.state.turns_total, w.status) == (3, "idle")
