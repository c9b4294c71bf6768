"""A Worker's state, applied from its events, and the one builder of its summary and detail.

The event log is the source of truth. :class:`WorkerState` is the projection of one Worker's
events (status, active turn, queue, counters, usage, idempotency keys) and
:meth:`WorkerState.apply` is the one pure function that computes it. The Runtime applies each
event as it emits it (its live state), a store applies the same events to rebuild a Worker
after a restart, and the read-only reader applies them as it follows a store: what is live
equals what is recovered by construction.

:func:`worker_summary` and :func:`worker_detail` turn an identity and a state into the wire
models, for the Runtime, the read-only reader and the Backend alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final, get_args

from .models import (
    ProfileInfo,
    TurnCounts,
    Usage,
    WorkerDetail,
    WorkerOverview,
    WorkerRef,
    WorkerStatus,
    WorkerSummary,
)

__all__ = [
    "STATUSES",
    "QueuedRecord",
    "WorkerState",
    "worker_detail",
    "worker_overview",
    "worker_summary",
]

#: Every Worker status, in the order counts and errors name them.
STATUSES: Final[tuple[WorkerStatus, ...]] = get_args(WorkerStatus)

_TERMINAL: Final = {
    "turn_completed": "completed",
    "turn_failed": "failed",
    "turn_cancelled": "cancelled",
    "turn_interrupted": "interrupted",
}


@dataclass(slots=True)
class QueuedRecord:
    """An acknowledged user input waiting for its turn."""

    turn_id: str
    transcript_sequence: int
    content: str


#: The empty queue and key list every state shares until its first append (memory per idle
#: Worker): only :meth:`WorkerState.apply` adds to them, and it first makes a list of its own.
_NO_QUEUE: Final[list[QueuedRecord]] = []
_NO_KEYS: Final[list[list[Any]]] = []


def _no_queue() -> list[QueuedRecord]:
    return _NO_QUEUE


def _no_keys() -> list[list[Any]]:
    return _NO_KEYS


@dataclass(slots=True)
class WorkerState:
    """The projection of one Worker's events: everything the Runtime needs to restore it."""

    worker_id: str
    position: int = 0  # the newest event applied
    status: WorkerStatus = "idle"
    active_turn_id: str | None = None
    active_input_sequence: int = 0
    queue: list[QueuedRecord] = field(default_factory=_no_queue)
    transcript_len: int = 0
    turns_total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    interrupted: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    last_activity_at: str = ""
    last_cursor: str = ""
    stop_cursor: str | None = None
    #: The idempotency keys of accepted inputs, oldest first, each
    #: ``[key, body_digest, turn_id, queued, transcript_sequence, cursor]``.
    input_keys: list[list[Any]] = field(default_factory=_no_keys)
    #: ``[key, body_digest]`` when the Worker was created with an idempotency key.
    create_key: list[str] | None = None

    def apply(
        self,
        position: int,
        kind: str,
        turn_id: str | None,
        cursor: str,
        at: str,
        data: dict[str, Any],
        *,
        keys: int = 1024,
    ) -> None:
        """Apply one of this Worker's events (idempotent for positions already applied);
        at most ``keys`` input idempotency keys are kept, the oldest forgotten first."""
        if position <= self.position:
            return
        self.position = position
        self.last_cursor = cursor
        self.last_activity_at = at
        if kind == "output_delta":  # the most frequent event changes nothing else
            return
        key = data.get("idempotency")
        if isinstance(key, dict):
            if kind == "worker_created":
                self.create_key = [str(key["key"]), str(key["body"])]
            elif kind == "input_accepted":
                if self.input_keys is _NO_KEYS:
                    self.input_keys = []
                self.input_keys.append(
                    [
                        key["key"],
                        key["body"],
                        turn_id,
                        bool(data.get("queued")),
                        data["transcript_sequence"],
                        cursor,
                    ]
                )
                if len(self.input_keys) > keys:
                    del self.input_keys[: len(self.input_keys) - keys]
        if kind == "input_accepted":
            self.transcript_len = max(self.transcript_len, data["transcript_sequence"])
            if data["input_kind"] == "user" and data.get("queued"):
                if self.queue is _NO_QUEUE:
                    self.queue = []
                self.queue.append(
                    QueuedRecord(turn_id or "", data["transcript_sequence"], data["content"])
                )
            elif data["input_kind"] == "user":
                # Its turn is open from here: if the process dies before turn_started is
                # written, recovery still ends that turn (interrupted), never leaves it hanging.
                self.active_input_sequence = data["transcript_sequence"]
                self.active_turn_id = turn_id
                self.status = "running"
        elif kind == "turn_started":
            if self.queue and self.queue[0].turn_id == turn_id:
                self.active_input_sequence = self.queue.pop(0).transcript_sequence
            self.active_turn_id = turn_id
            self.status = "running"
            self.turns_total += 1
        elif kind in ("message_completed", "turn_failed"):
            sequence = data.get("transcript_sequence")
            if sequence is not None:
                self.transcript_len = max(self.transcript_len, sequence)
        if kind in _TERMINAL:
            outcome = _TERMINAL[kind]
            setattr(self, outcome, getattr(self, outcome) + 1)
            if kind == "turn_completed":
                usage = data.get("usage") or {}
                self.input_tokens += int(usage.get("input_tokens", 0))
                self.output_tokens += int(usage.get("output_tokens", 0))
            self.active_turn_id = None
            self.active_input_sequence = 0
            if self.status == "running":
                self.status = "idle"
        elif kind == "input_discarded":
            self.queue = [q for q in self.queue if q.turn_id != turn_id]
        elif kind == "worker_stopped":
            self.status = "stopped"
            self.stop_cursor = cursor
            self.queue = _NO_QUEUE

    def copy(self) -> WorkerState:
        """An independent copy (its lists are copied; their items are never mutated)."""
        return WorkerState(
            self.worker_id,
            self.position,
            self.status,
            self.active_turn_id,
            self.active_input_sequence,
            list(self.queue) if self.queue else _NO_QUEUE,
            self.transcript_len,
            self.turns_total,
            self.completed,
            self.failed,
            self.cancelled,
            self.interrupted,
            self.input_tokens,
            self.output_tokens,
            self.last_activity_at,
            self.last_cursor,
            self.stop_cursor,
            list(self.input_keys) if self.input_keys else _NO_KEYS,
            self.create_key,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WorkerState:
        queue = [QueuedRecord(**q) for q in raw.get("queue", [])]
        return cls(**{**raw, "queue": queue})


def worker_summary(
    ref: WorkerRef,
    *,
    name: str | None,
    profile: str,
    created_at: str,
    state: WorkerState,
    head_cursor: str = "",
) -> WorkerSummary:
    """A Worker's summary from its identity and state. A status a store does not know reads
    as ``idle``; a Worker with no event of its own yet has ``head_cursor`` as its cursor."""
    return WorkerSummary(**_summary_fields(ref, name, profile, created_at, state, head_cursor))


def worker_overview(
    state: WorkerState, *, created_at: str, head_cursor: str = ""
) -> WorkerOverview:
    """A Worker's counters, usage and last activity (the same figures as ``overview.json``)."""
    return WorkerOverview(
        turns=TurnCounts(
            total=state.turns_total,
            completed=state.completed,
            failed=state.failed,
            cancelled=state.cancelled,
            interrupted=state.interrupted,
        ),
        usage=Usage(input_tokens=state.input_tokens, output_tokens=state.output_tokens),
        transcript_len=state.transcript_len,
        last_activity_at=state.last_activity_at or created_at,
        last_cursor=state.last_cursor or head_cursor,
    )


def worker_detail(
    ref: WorkerRef,
    *,
    name: str | None,
    profile_info: ProfileInfo,
    created_at: str,
    state: WorkerState,
    head_cursor: str = "",
) -> WorkerDetail:
    """A Worker's detail: its summary, overview and profile info."""
    return WorkerDetail(
        **_summary_fields(ref, name, profile_info.name, created_at, state, head_cursor),
        overview=worker_overview(state, created_at=created_at, head_cursor=head_cursor),
        profile_info=profile_info,
    )


def _summary_fields(
    ref: WorkerRef,
    name: str | None,
    profile: str,
    created_at: str,
    state: WorkerState,
    head_cursor: str,
) -> dict[str, Any]:
    status = state.status
    return {
        "worker_ref": ref,
        "runtime_id": ref.runtime_id,
        "worker_id": ref.worker_id,
        "name": name,
        "status": status if status in STATUSES else "idle",
        "profile": profile,
        "active_turn_id": state.active_turn_id,
        "queued_inputs": len(state.queue),
        "transcript_len": state.transcript_len,
        "last_cursor": state.last_cursor or head_cursor,
        "created_at": created_at,
        "last_activity_at": state.last_activity_at or created_at,
    }
