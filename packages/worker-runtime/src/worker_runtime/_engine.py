"""The Runtime's internal plumbing (private): state, the event log and store, checks.

:class:`~worker_runtime.runtime.Runtime` builds on these classes; nothing here is public API.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from anyio.abc import TaskGroup
from pydantic import BaseModel, ValidationError

from ._worker import Status, Worker
from .errors import (
    InvalidInput,
    LimitTooLarge,
    RuntimeUnavailable,
    WorkerNotFound,
    WorkerRuntimeError,
    WrongRuntime,
    invalid_input_from,
)
from .events import EventLog, now_rfc3339
from .execution import ExecutionBackend
from .models import (
    Diagnostic,
    InputRequest,
    Limits,
    WorkerRef,
)
from .store import RuntimeStore

__all__ = ["Engine", "check_limit", "parse_request"]

log = logging.getLogger("worker_runtime")


def check_limit(limit: int | None, default: int, maximum: int) -> int:
    """A page size: ``default`` when absent; an error (never a clamp) when not in 1..maximum."""
    if limit is None:
        return min(default, maximum)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidInput("limit must be an integer >= 1", details={"field": "limit"})
    if limit > maximum:
        raise LimitTooLarge(
            f"limit must be at most {maximum}", details={"field": "limit", "maximum": maximum}
        )
    return limit


M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], value: M | Mapping[str, Any] | None) -> M:
    """Validate a request given as a model or a mapping; failures are ``invalid_input``."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise invalid_input_from(exc.errors()) from None


class Engine:
    """State and plumbing shared by the Runtime's parts. Attributes are set by
    :class:`~worker_runtime.runtime.Runtime`."""

    _runtime_id: str
    _limits: Limits
    _store: RuntimeStore
    _backends: dict[str, ExecutionBackend]
    _workers: dict[str, Worker]
    _order: list[Worker]
    _counts: dict[str, int]
    _diagnostics: deque[Diagnostic]
    _diagnostics_total: int
    _log: EventLog | None
    _tg: TaskGroup | None
    _state: str
    _store_error: RuntimeUnavailable | None

    # -- internals: log, store, state --------------------------------------------------------

    def _emit(self, kind: str, w: Worker | None, turn_id: str | None, data: dict[str, Any]) -> str:
        """Append an event to the store, then to the log; returns its cursor.

        The store records the event first and all-or-nothing, so the in-memory log never
        holds an event the store refused. Once the store has failed (fail-stop), the log alone
        carries the events that tell live subscribers what happened."""
        log_ = self._require_log()
        event = log_.prepare(kind, w.worker_id if w is not None else None, turn_id, data)
        if self._store_error is None:
            try:
                self._store.append_events((event,))
            except WorkerRuntimeError as exc:
                self._store_failed(exc)
        log_.record(event)
        cursor = event.cursor or ""
        if w is not None:
            w.last_cursor = cursor
            w.last_activity_at = event.at
        return cursor

    async def _commit(self) -> None:
        """Make recorded events durable, then visible to readers."""
        if self._store_error is not None:
            raise self._store_error
        if self._store.durable:
            try:
                await self._store.sync()
                # Events other tasks appended while the sync awaited become visible too: the
                # OS must have them first (a subscriber never sees what a crash could lose).
                self._store.flush()
            except WorkerRuntimeError as exc:
                self._store_failed(exc)
                raise

        self._require_log().publish()
        if self._store.durable:
            try:
                await self._store.maintain()  # after publication: readers never wait for it
            except WorkerRuntimeError as exc:
                self._store_failed(exc)
                raise

    def _publish_flushed(self) -> None:
        """Publish streamed output once the OS has it (no fsync: it is not acknowledged)."""
        if self._store_error is None and self._store.durable:
            try:
                self._store.flush()
            except WorkerRuntimeError as exc:
                self._store_failed(exc)
                return
        self._require_log().publish()

    def _store_failed(self, exc: WorkerRuntimeError) -> None:
        """Fail-stop after a store write failed: refuse commands, interrupt running turns."""
        if self._store_error is not None:
            return
        log.error("store failed: %s", exc.message)
        self._store_error = RuntimeUnavailable(
            "the Runtime's store failed; it accepts no more commands",
            details={"reason": "store_failed"},
        )
        for w in self._order:
            if w.active is not None:
                w.active.interrupt_reason = "store_failed"
                w.active.scope.cancel()

    def _diagnose(
        self,
        severity: Literal["info", "warning", "error"],
        code: str,
        message: str,
        worker_id: str | None = None,
    ) -> None:
        self._diagnostics_total += 1
        diagnostic = Diagnostic(
            id=f"diag-{self._diagnostics_total}",
            severity=severity,
            code=code,
            message=message,
            worker_id=worker_id,
            at=now_rfc3339(),
        )
        self._diagnostics.append(diagnostic)
        self._emit(
            "diagnostic",
            self._workers.get(worker_id or ""),
            None,
            {
                "severity": severity,
                "code": code,
                "message": message,
            },
        )

    def _drain_store_diagnostics(self) -> None:
        for d in self._store.take_diagnostics():
            self._diagnose(d.severity, d.code, d.message, d.worker_id)

    def _set_status(self, w: Worker, status: Status) -> None:
        self._counts[w.status] -= 1
        self._counts[status] += 1
        w.status = status

    def _summary_json(self, w: Worker) -> dict[str, Any]:
        return w.summary(self._runtime_id).model_dump(mode="json")

    def _new_worker_id(self) -> str:
        while True:
            worker_id = "wkr_" + secrets.token_hex(10)
            if worker_id not in self._workers:
                return worker_id

    def _require_log(self) -> EventLog:
        if self._log is None:
            raise RuntimeUnavailable("the Runtime is not started; use 'async with Runtime(...)'")
        return self._log

    def _check_store(self) -> None:
        """After a store failure nothing is served, so no caller observes state the store did
        not take; restart the Runtime to recover what was acknowledged."""
        if self._store_error is not None:
            raise self._store_error

    def _check_accepting(self) -> None:
        self._check_store()
        if self._state != "running":
            raise RuntimeUnavailable(
                "the Runtime is not accepting commands",
                details={"reason": "shutting_down" if self._state != "new" else "not_started"},
            )

    def _worker(self, ref: WorkerRef) -> Worker:
        if not isinstance(ref, WorkerRef):
            raise InvalidInput("a WorkerRef is required", details={"field": "worker_ref"})
        if ref.runtime_id != self._runtime_id:
            raise WrongRuntime(
                "the WorkerRef names another Runtime", details={"runtime_id": ref.runtime_id}
            )
        w = self._workers.get(ref.worker_id)
        if w is None:
            raise WorkerNotFound("no Worker with that id", details={"worker_id": ref.worker_id})
        return w

    def _check_content(self, req: InputRequest, *, field: str) -> None:
        size = len(req.content.encode("utf-8"))
        if size > self._limits.max_input_bytes:
            raise InvalidInput(
                f"{field}: {size} bytes is over the limit of {self._limits.max_input_bytes}",
                details={"field": field, "max_input_bytes": self._limits.max_input_bytes},
            )

    def _check_reason(self, reason: str | None) -> str | None:
        if reason is None:
            return None
        if not isinstance(reason, str) or len(reason) > 1000 or "\x00" in reason:
            raise InvalidInput(
                "reason must be a string of at most 1000 characters", details={"field": "reason"}
            )
        return reason.strip() or None
