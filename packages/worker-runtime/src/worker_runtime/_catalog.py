"""The Runtime's Workers (private): lookup, creation order, counts by status, paging, and
rebuilding a Worker from what a store recovered."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from functools import partial

from pydantic import ValidationError

from ._checks import check_limit
from ._worker import Deferred, IdempotencyCache, Turn, Worker
from .errors import InvalidInput, WorkerNotFound, WrongRuntime
from .models import InputAck, Limits, WorkerPage, WorkerRef, WorkerStatus, WorkerSummary
from .profiles import Profile
from .state import STATUSES, WorkerState
from .store import RecoveredWorker, StoreDiagnostic

__all__ = ["Catalog"]


class Catalog:
    """Every Worker of one Runtime, in creation order, with their counts by status."""

    def __init__(self, runtime_id: str, limits: Limits) -> None:
        self._runtime_id = runtime_id
        self._limits = limits
        self._workers: dict[str, Worker] = {}
        self._order: list[Worker] = []
        self.counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        #: The Worker each create idempotency key made.
        self.creates: IdempotencyCache[str] = IdempotencyCache(limits.max_idempotency_keys)
        self._profiles: dict[str, Profile] = {}  # recovered profiles, validated once each

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._order)

    def running(self) -> list[Turn]:
        """The turns in flight, in creation order of their Workers."""
        return [w.turn for w in self._order if w.turn is not None]

    def new_id(self) -> str:
        """A fresh worker_id."""
        while True:
            worker_id = "wkr_" + secrets.token_hex(10)
            if worker_id not in self._workers:
                return worker_id

    def add_new(
        self, worker_id: str, name: str | None, profile: Profile, created_at: str, cursor: str
    ) -> Worker:
        """A new idle Worker, added last."""
        state = WorkerState(worker_id, last_activity_at=created_at, last_cursor=cursor)
        w = Worker(worker_id, name, profile, len(self._order), created_at, state)
        self._add(w)
        return w

    def _add(self, w: Worker) -> None:
        self._workers[w.worker_id] = w
        self._order.append(w)
        self.counts[w.status] += 1

    def recount(self, before: WorkerStatus, after: WorkerStatus) -> None:
        """A Worker's status changed from ``before`` to ``after``."""
        self.counts[before] -= 1
        self.counts[after] += 1

    def get(self, worker: str | WorkerRef) -> Worker:
        """The Worker a ``worker_id`` or a ``WorkerRef`` of this Runtime names."""
        if isinstance(worker, str):
            worker_id = worker
        elif isinstance(worker, WorkerRef):
            if worker.runtime_id != self._runtime_id:
                raise WrongRuntime(
                    "the WorkerRef names another Runtime", details={"runtime_id": worker.runtime_id}
                )
            worker_id = worker.worker_id
        else:
            raise InvalidInput(
                "a worker_id or a WorkerRef is required", details={"field": "worker_id"}
            )
        w = self._workers.get(worker_id)
        if w is None:
            raise WorkerNotFound("no Worker with that id", details={"worker_id": worker_id[:200]})
        return w

    def find(self, worker_id: str | None) -> Worker | None:
        return self._workers.get(worker_id) if worker_id is not None else None

    def page(self, *, status: str | None, limit: int | None, after: str | None) -> WorkerPage:
        """A page of Workers in creation order; ``after`` is the last worker_id of the previous
        page, and ``next_after`` is ``None`` on the last page."""
        limit = check_limit(limit, 100, self._limits.max_list_workers)
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}", details={"field": "status"}
            )
        start = 0
        if after is not None:
            prior = self._workers.get(after) if isinstance(after, str) else None
            if prior is None:
                raise InvalidInput(
                    "after must be the worker_id of a Worker of this Runtime",
                    details={"field": "after"},
                )
            start = prior.ordinal + 1
        page: list[WorkerSummary] = []
        next_after: str | None = None
        for w in self._order[start:] if start else self._order:
            if status is not None and w.status != status:
                continue
            if len(page) == limit:
                next_after = page[-1].worker_id
                break
            page.append(w.summary(self._runtime_id))
        return WorkerPage(workers=page, next_after=next_after)

    def restore(self, recovered: RecoveredWorker) -> Worker | StoreDiagnostic:
        """Add a Worker a store recovered, with its state as the store projected it (a copy:
        from here the Runtime applies its events); a diagnostic if its record is invalid."""
        record = recovered.record
        try:
            key = repr(record.profile)  # equal records share one Profile (a cache key only)
            profile = self._profiles.get(key)
            if profile is None:
                profile = self._profiles[key] = Profile.model_validate(record.profile)
        except (ValidationError, TypeError):
            return StoreDiagnostic(
                "warning",
                "worker_snapshot_ignored",
                "a Worker's profile record is invalid; the Worker was skipped",
                record.worker_id,
            )
        state = recovered.state.copy()
        state.last_activity_at = state.last_activity_at or record.created_at
        w = Worker(
            record.worker_id, record.name, profile, len(self._order), record.created_at, state
        )
        w.history = None  # read from the store when a turn first needs it
        if state.create_key is not None:
            self.creates.put(state.create_key[0], state.create_key[1], w.worker_id)
        if state.input_keys:
            w.acks = IdempotencyCache(self._limits.max_idempotency_keys)
            ref, status = w.ref(self._runtime_id), state.status
            for key, body, turn_id, queued, sequence, cursor in state.input_keys:
                ack = Deferred(
                    partial(
                        InputAck,
                        worker_ref=ref,
                        turn_id=turn_id,
                        queued=queued,
                        transcript_sequence=sequence,
                        cursor=cursor,
                        status=status,
                    )
                )
                w.acks.put(key, body, ack)
        if state.status != "stopped" and state.active_turn_id is not None:
            w.turn = Turn(state.active_turn_id, state.active_input_sequence, 0.0, 0)
        self._add(w)
        return w
