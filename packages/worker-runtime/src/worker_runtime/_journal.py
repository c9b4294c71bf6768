"""The Runtime's journal (private): the event log, the store behind it, fail-stop and
diagnostics.

Emitting an event records it in the store, then in the in-memory log, then applies it to its
Worker's :class:`~worker_runtime.state.WorkerState` with the same function a store applies when
it recovers: the Runtime's live state is the projection of what it journaled.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Literal, cast, overload

from ._catalog import Catalog
from ._eventdata import (
    DiagnosticData,
    EventData,
    EventKind,
    InputAcceptedData,
    InputDiscardedData,
    MessageCompletedData,
    OutputDeltaData,
    ReasonData,
    RuntimeStartedData,
    TurnCompletedData,
    TurnFailedData,
    TurnStartedData,
    WorkerCreatedData,
)
from ._worker import Worker
from .errors import RuntimeUnavailable, WorkerRuntimeError
from .events import EventLog, Subscription, now_rfc3339
from .models import Diagnostic, EventPage, Limits
from .store import RuntimeStore, StoreOpened

__all__ = ["DURABLE_WORKER_CACHE", "Journal"]

log = logging.getLogger("worker_runtime")

#: Events kept in memory per Worker when the store is durable (older ones are read from disk).
DURABLE_WORKER_CACHE = 256


class Journal:
    """Appends events (store first, then the log), applies them to Worker state, makes them
    durable and visible, and fails stop when the store fails."""

    def __init__(
        self, runtime_id: str, limits: Limits, store: RuntimeStore, catalog: Catalog
    ) -> None:
        self.runtime_id = runtime_id
        self.store = store
        self._limits = limits
        self._catalog = catalog
        self._keys = limits.max_idempotency_keys
        self._log: EventLog | None = None
        #: Set once a store write failed: every command is refused with it from then on.
        self.error: RuntimeUnavailable | None = None
        self._diagnostics: deque[Diagnostic] = deque(maxlen=limits.max_diagnostics)
        self.diagnostics_total = 0

    def open(self, opened: StoreOpened) -> EventLog:
        """Start the in-memory log after the store's head."""
        limits, store = self._limits, self.store
        self._log = EventLog(
            runtime_id=self.runtime_id,
            incarnation=opened.incarnation,
            window=limits.runtime_event_window,
            window_bytes=limits.runtime_event_window_bytes,
            # With a durable store the rings are only a cache in front of the disk.
            worker_backlog=(
                min(limits.event_backlog, DURABLE_WORKER_CACHE)
                if store.durable
                else limits.event_backlog
            ),
            head=opened.head,
            archive=store if store.durable else None,
        )
        return self._log

    @property
    def started(self) -> bool:
        return self._log is not None

    @property
    def log(self) -> EventLog:
        if self._log is None:
            raise RuntimeUnavailable("the Runtime is not started; use 'async with Runtime(...)'")
        return self._log

    def check(self) -> None:
        """After a store failure nothing is served, so no caller observes state the store did
        not take; restart the Runtime to recover what was acknowledged."""
        if self.error is not None:
            raise self.error

    def check_open(self) -> None:
        """``runtime_unavailable`` once the log was closed (the Runtime shut down)."""
        if self.log.closed:
            raise RuntimeUnavailable(
                "the Runtime has shut down", details={"reason": "shutting_down"}
            )

    # -- reading ---------------------------------------------------------------------------

    async def read_page(self, cursor: str | None, limit: int, worker_id: str | None) -> EventPage:
        """Up to ``limit`` events after ``cursor`` (from the oldest retained without one),
        runtime-wide or for one Worker; ``next_cursor`` continues the read. Events only a
        durable store still holds are read off the event loop."""
        log_ = self.log
        if cursor is None:
            position = max(0, log_.oldest_retained(worker_id) - 1)
        else:
            position = log_.position_of(cursor)
        events = await log_.read_page(position, limit, worker_id)
        next_cursor = events[-1].cursor if events else log_.cursor_at(position)
        return EventPage(events=[e.to_dict() for e in events], next_cursor=next_cursor or "")

    def subscribe(self, cursor: str | None, worker_id: str | None) -> Subscription:
        """The events after ``cursor`` (new events only without one); cursor errors are
        raised here, before any event."""
        log_ = self.log
        if cursor is None:
            position = log_.head
        else:
            position = log_.position_of(cursor)
            log_.check_resumable(position, worker_id)
        return log_.subscribe(position, worker_id)

    # -- writing ---------------------------------------------------------------------------

    @overload
    def emit(
        self,
        kind: Literal["runtime_started"],
        w: Worker | None,
        turn_id: str | None,
        data: RuntimeStartedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["worker_created"],
        w: Worker | None,
        turn_id: str | None,
        data: WorkerCreatedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["input_accepted"],
        w: Worker | None,
        turn_id: str | None,
        data: InputAcceptedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["input_discarded"],
        w: Worker | None,
        turn_id: str | None,
        data: InputDiscardedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["turn_started"],
        w: Worker | None,
        turn_id: str | None,
        data: TurnStartedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["output_delta"],
        w: Worker | None,
        turn_id: str | None,
        data: OutputDeltaData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["message_completed"],
        w: Worker | None,
        turn_id: str | None,
        data: MessageCompletedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["turn_completed"],
        w: Worker | None,
        turn_id: str | None,
        data: TurnCompletedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["turn_failed"],
        w: Worker | None,
        turn_id: str | None,
        data: TurnFailedData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["turn_cancelled", "turn_interrupted", "worker_stopped"],
        w: Worker | None,
        turn_id: str | None,
        data: ReasonData,
    ) -> str: ...

    @overload
    def emit(
        self,
        kind: Literal["diagnostic"],
        w: Worker | None,
        turn_id: str | None,
        data: DiagnosticData,
    ) -> str: ...

    def emit(self, kind: EventKind, w: Worker | None, turn_id: str | None, data: EventData) -> str:
        """Append an event to the store, then to the log, then apply it to its Worker's
        state; returns its cursor.

        The store records the event first and all-or-nothing, so the in-memory log never
        holds an event the store refused. Once the store has failed (fail-stop), the log alone
        carries the events that tell live subscribers what happened."""
        log_ = self.log
        raw = cast("dict[str, Any]", data)  # a string: no alias is built per event
        event = log_.prepare(kind, w.worker_id if w is not None else None, turn_id, raw)
        if self.error is None:
            try:
                self.store.append_events((event,))
            except WorkerRuntimeError as exc:
                self.failed(exc)
        log_.record(event)
        cursor = event.cursor or ""
        if w is not None:
            state = w.state
            before = state.status
            state.apply(event.position, kind, turn_id, cursor, event.at, raw, keys=self._keys)
            if state.status != before:
                self._catalog.recount(before, state.status)
        return cursor

    async def commit(self) -> None:
        """Make recorded events durable, then visible to readers."""
        if self.error is not None:
            raise self.error
        if self.store.durable:
            try:
                await self.store.sync()
                # Events other tasks appended while the sync awaited become visible too: the
                # OS must have them first (a subscriber never sees what a crash could lose).
                self.store.flush()
            except WorkerRuntimeError as exc:
                self.failed(exc)
                raise
        self.log.publish()
        if self.store.durable:
            try:
                await self.store.maintain()  # after publication: readers never wait for it
            except WorkerRuntimeError as exc:
                self.failed(exc)
                raise

    def publish_flushed(self) -> None:
        """Publish streamed output once the OS has it (no fsync: it is not acknowledged)."""
        if self.error is None and self.store.durable:
            try:
                self.store.flush()
            except WorkerRuntimeError as exc:
                self.failed(exc)
                return
        self.log.publish()

    def failed(self, exc: WorkerRuntimeError) -> None:
        """Fail-stop after a store write failed: refuse commands, interrupt running turns."""
        if self.error is not None:
            return
        log.error("store failed: %s", exc.message)
        self.error = RuntimeUnavailable(
            "the Runtime's store failed; it accepts no more commands",
            details={"reason": "store_failed"},
        )
        for turn in self._catalog.running():
            turn.interrupt_reason = "store_failed"
            turn.scope.cancel()

    # -- diagnostics -------------------------------------------------------------------------

    def diagnose(
        self,
        severity: Literal["info", "warning", "error"],
        code: str,
        message: str,
        worker_id: str | None = None,
    ) -> None:
        """Keep a diagnostic and emit it as a ``diagnostic`` event."""
        self.diagnostics_total += 1
        self._diagnostics.append(
            Diagnostic(
                id=f"diag-{self.diagnostics_total}",
                severity=severity,
                code=code,
                message=message,
                worker_id=worker_id,
                at=now_rfc3339(),
            )
        )
        self.emit(
            "diagnostic",
            self._catalog.find(worker_id),
            None,
            {"severity": severity, "code": code, "message": message},
        )

    def diagnostics(self, limit: int) -> list[Diagnostic]:
        """The newest ``limit`` diagnostics, oldest first, after the store's new ones."""
        for d in self.store.take_diagnostics():
            self.diagnose(d.severity, d.code, d.message, d.worker_id)
        return list(self._diagnostics)[-limit:]
