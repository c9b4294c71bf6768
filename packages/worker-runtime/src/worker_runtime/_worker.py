"""The in-memory state of one Worker and of its turns (private to the Runtime)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from typing import Any, Generic, Literal, TypeVar

import anyio

from .execution import ContextMessage
from .models import (
    InputAck,
    InputRequest,
    StopAck,
    TurnCounts,
    Usage,
    WorkerDetail,
    WorkerOverview,
    WorkerRef,
    WorkerSummary,
)
from .profiles import Profile

Status = Literal["idle", "running", "stopped"]
T = TypeVar("T")


class Turn:
    """A turn that is running. ``scope`` is created with the turn so a cancel that arrives
    before the turn's task first runs still cancels it."""

    __slots__ = (
        "cancel_reason",
        "context_len",
        "done",
        "input_sequence",
        "interrupt_reason",
        "scope",
        "settled_cursor",
        "started",
        "turn_id",
    )

    def __init__(self, turn_id: str, input_sequence: int, started: float, context_len: int) -> None:
        self.turn_id = turn_id
        self.input_sequence = input_sequence
        self.context_len = context_len
        self.started = started
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.cancel_reason: str | None = None
        self.interrupt_reason: str | None = None
        self.settled_cursor: str | None = None


class QueuedInput:
    """An acknowledged user input waiting for its turn."""

    __slots__ = ("content", "transcript_sequence", "turn_id")

    def __init__(self, turn_id: str, transcript_sequence: int, content: str) -> None:
        self.turn_id = turn_id
        self.transcript_sequence = transcript_sequence
        self.content = content


class IdempotencyCache(Generic[T]):
    """Remembers the first answer to each idempotency key, with the body it answered.

    Bounded: past ``capacity`` keys the oldest is forgotten (documented limit).
    """

    __slots__ = ("_capacity", "_items")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[str, T]] = OrderedDict()

    def get(self, key: str) -> tuple[str, T] | None:
        return self._items.get(key)

    def put(self, key: str, fingerprint: str, value: T) -> None:
        self._items[key] = (fingerprint, value)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


def fingerprint(model: InputRequest | Any) -> str:
    """A digest of a request body (without its idempotency key) for idempotency checks."""
    body = model.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


def key_data(model: InputRequest | Any) -> dict[str, Any]:
    """What an event records of its command's idempotency key (nothing without one): the key
    and the digest of the body it answered, so the key is as durable as the command."""
    key = getattr(model, "idempotency_key", None)
    if key is None:
        return {}
    return {"idempotency": {"key": key, "body": fingerprint(model)}}


class Worker:
    """One Worker's state. Mutated only by the Runtime, without awaiting in between."""

    __slots__ = (
        "_ref",
        "active",
        "cancelled",
        "completed",
        "created_at",
        "failed",
        "history",
        "idempotency",
        "input_tokens",
        "interrupted",
        "last_activity_at",
        "last_cursor",
        "name",
        "ordinal",
        "output_tokens",
        "profile",
        "queue",
        "status",
        "stop_ack",
        "stop_done",
        "transcript_len",
        "turns_total",
        "worker_id",
    )

    def __init__(
        self,
        worker_id: str,
        name: str | None,
        profile: Profile,
        ordinal: int,
        created_at: str,
        cursor: str,
    ) -> None:
        self.worker_id = worker_id
        self.name = name
        self.profile = profile
        self.ordinal = ordinal
        self.created_at = created_at
        self.status: Status = "idle"
        self.active: Turn | None = None
        self.queue: deque[QueuedInput] | None = None
        self.transcript_len = 0
        self.turns_total = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.interrupted = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.last_activity_at = created_at
        self.last_cursor = cursor
        self.idempotency: IdempotencyCache[InputAck] | None = None
        # The conversation in the order the model sees it: system inputs when accepted, a user
        # input when its turn starts, assistant messages when committed. A turn's context is
        # the prefix that existed when it started.
        self.history: list[ContextMessage] | None = []
        self.stop_ack: StopAck | None = None
        self.stop_done: anyio.Event | None = None
        self._ref: WorkerRef | None = None  # made on first use, then shared

    @property
    def queued(self) -> int:
        return len(self.queue) if self.queue else 0

    def ref(self, runtime_id: str) -> WorkerRef:
        ref = self._ref
        if ref is None or ref.runtime_id != runtime_id:
            ref = self._ref = WorkerRef(runtime_id=runtime_id, worker_id=self.worker_id)
        return ref

    def summary_fields(self, runtime_id: str) -> dict[str, Any]:
        return {
            "worker_ref": self.ref(runtime_id),
            "runtime_id": runtime_id,
            "worker_id": self.worker_id,
            "name": self.name,
            "status": self.status,
            "profile": self.profile.name,
            "active_turn_id": self.active.turn_id if self.active else None,
            "queued_inputs": self.queued,
            "transcript_len": self.transcript_len,
            "last_cursor": self.last_cursor,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
        }

    def summary(self, runtime_id: str) -> WorkerSummary:
        return WorkerSummary(**self.summary_fields(runtime_id))

    def detail(self, runtime_id: str) -> WorkerDetail:
        overview = WorkerOverview(
            turns=TurnCounts(
                total=self.turns_total,
                completed=self.completed,
                failed=self.failed,
                cancelled=self.cancelled,
                interrupted=self.interrupted,
            ),
            usage=Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens),
            transcript_len=self.transcript_len,
            last_activity_at=self.last_activity_at,
            last_cursor=self.last_cursor,
        )
        return WorkerDetail(
            **self.summary_fields(runtime_id), overview=overview, profile_info=self.profile.info
        )
