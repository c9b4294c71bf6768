"""The journal: events are stored, logged, applied to Worker state, published, fail-stop."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from worker_runtime import InputRequest, Limits, MemoryStore, RuntimeUnavailable
from worker_runtime.events import Event

from .parts import open_parts

pytestmark = pytest.mark.anyio


class FailingStore(MemoryStore):
    """A memory store whose writes fail once ``fail`` is set (an injected I/O fault)."""

    fail = False

    def append_events(self, events: Sequence[Event]) -> None:
        if self.fail:
            # What a store raises for an I/O fault (the fs store's StoreIOError is one).
            raise RuntimeUnavailable("injected write failure", details={"reason": "store_io"})
        super().append_events(events)


async def test_an_emitted_event_is_applied_to_its_workers_state_and_counts() -> None:
    """Emitting an event applies it to its Worker's state and keeps the status counts."""
    async with open_parts() as parts:
        w = parts.new_worker()
        assert parts.catalog.counts == {"idle": 1, "running": 0, "stopped": 0}
        cursor = parts.journal.emit(
            "input_accepted",
            w,
            "turn_1",
            {"input_kind": "user", "content": "hi", "transcript_sequence": 1, "queued": False},
        )
        assert w.state.last_cursor == cursor
        assert (w.state.status, w.state.active_turn_id, w.state.transcript_len) == (
            "running",
            "turn_1",
            1,
        )
        assert parts.catalog.counts == {"idle": 0, "running": 1, "stopped": 0}
        parts.journal.emit("turn_interrupted", w, "turn_1", {"reason": "test"})
        assert (w.state.status, w.state.interrupted) == ("idle", 1)
        assert parts.catalog.counts == {"idle": 1, "running": 0, "stopped": 0}


async def test_events_become_visible_only_when_committed() -> None:
    """An emitted event is in the store at once but reaches readers only after commit."""
    async with open_parts() as parts:
        log = parts.journal.log
        head = log.head
        parts.new_worker()
        assert log.head == head
        await parts.journal.commit()
        assert log.head == head + 1
        assert [e.kind for e in log.read_after(head, 10)] == ["worker_created"]


async def test_a_failed_store_write_stops_the_runtime_and_interrupts_running_turns() -> None:
    """After a store write fails, the log still carries events for live readers, every
    commit raises runtime_unavailable (store_failed), and a running turn is interrupted."""
    store = FailingStore()
    async with open_parts(store=store) as parts:
        w = parts.new_worker()
        parts.runner.accept(w, InputRequest(content="hello"))
        turn = w.turn
        assert turn is not None
        store.fail = True
        parts.journal.emit(
            "diagnostic", None, None, {"severity": "info", "code": "x", "message": "y"}
        )
        assert parts.journal.error is not None
        assert turn.interrupt_reason == "store_failed"
        assert turn.scope.cancel_called
        with pytest.raises(RuntimeUnavailable) as caught:
            await parts.journal.commit()
        assert caught.value.details == {"reason": "store_failed"}
        await turn.done.wait()
        assert w.state.interrupted == 1


async def test_diagnostics_are_bounded_and_each_is_an_event() -> None:
    """The journal keeps the newest max_diagnostics diagnostics and emits each as an event."""
    async with open_parts(limits=Limits(max_diagnostics=2)) as parts:
        head = parts.journal.log.head
        for i in range(3):
            parts.journal.diagnose("warning", f"code.{i}", f"message {i}")
        await parts.journal.commit()
        kept = parts.journal.diagnostics(10)
        assert [d.code for d in kept] == ["code.1", "code.2"]
        assert parts.journal.diagnostics_total == 3
        events = parts.journal.log.read_after(head, 10)
        assert [e.data["code"] for e in events] == ["code.0", "code.1", "code.2"]
