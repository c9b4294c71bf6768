"""A live Worker (private to the Runtime): its identity, its :class:`WorkerState` applied from
its events, and beside it only what is in flight (the running :class:`Turn`, a stop under way)
or cached (the model history, the answers to idempotency keys)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import anyio
import anyio.lowlevel
from pydantic import BaseModel

from ._eventdata import IdempotencyData
from .errors import IdempotencyConflict
from .execution import ContextMessage
from .models import (
    InputAck,
    InputRequest,
    StopAck,
    WorkerDetail,
    WorkerRef,
    WorkerStatus,
    WorkerSummary,
)
from .profiles import Profile
from .state import WorkerState, worker_detail, worker_summary

__all__ = ["IdempotencyCache", "Turn", "Worker", "fingerprint", "idempotency_of"]

T = TypeVar("T")

#: The empty history every new Worker shares until its first message (memory per idle
#: Worker): the context policy gives a Worker a list of its own before it appends.
NO_HISTORY: Final[list[ContextMessage]] = []


class Once:
    """A one-shot event (``set``, ``is_set``, ``wait``, as :class:`anyio.Event`) that makes
    its event only when something waits before it is set: most turns settle unobserved."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


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

    def __init__(
        self,
        turn_id: str,
        input_sequence: int,
        started: float,
        context_len: int,
        scope: anyio.CancelScope | None = None,
    ) -> None:
        self.turn_id = turn_id
        self.input_sequence = input_sequence
        self.context_len = context_len
        self.started = started
        self.scope = anyio.CancelScope() if scope is None else scope
        self.done = Once()
        self.cancel_reason: str | None = None
        self.interrupt_reason: str | None = None
        self.settled_cursor: str | None = None


class IdempotencyCache(Generic[T]):
    """Remembers the first answer to each idempotency key, with the body it answered.

    Bounded: past ``capacity`` keys the oldest is forgotten (documented limit).
    """

    __slots__ = ("_capacity", "_items")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[str, T | Deferred[T]]] = OrderedDict()

    def get(self, key: str) -> tuple[str, T] | None:
        prior = self._items.get(key)
        if prior is None:
            return None
        value = prior[1]
        if isinstance(value, Deferred):
            value = value.build()
            self._items[key] = (prior[0], value)  # built once; its place in the order stays
        return prior[0], value

    def answer(self, key: str, request: BaseModel) -> T | None:
        """The first answer to ``key``, if it is known; ``idempotency_conflict`` if it
        answered another body."""
        prior = self.get(key)
        if prior is None:
            return None
        if prior[0] != fingerprint(request):
            raise IdempotencyConflict(
                "this idempotency key was used with another body",
                details={"idempotency_key": key},
            )
        return prior[1]

    def put(self, key: str, fingerprint: str, value: T | Deferred[T]) -> None:
        """Remember ``value`` (or a :class:`Deferred` one, built when the key is first asked
        for again: a restart restores up to ``capacity`` keys per Worker, most never retried)."""
        self._items[key] = (fingerprint, value)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


class Deferred(Generic[T]):
    """An answer built on first use, by ``build()`` (e.g. a :func:`functools.partial`)."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], T]) -> None:
        self.build = build


def fingerprint(model: InputRequest | Any) -> str:
    """A digest of a request body (without its idempotency key) for idempotency checks."""
    body = model.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


def idempotency_of(model: InputRequest | Any) -> IdempotencyData | None:
    """What an event records of its command's idempotency key (``None`` without one): the
    key and the digest of the body it answered, so the key is as durable as the command."""
    key = getattr(model, "idempotency_key", None)
    if key is None:
        return None
    return {"key": key, "body": fingerprint(model)}


class Worker:
    """One live Worker. ``state`` changes only by applying the Worker's events (the journal
    does it as it emits them); the rest is what is in flight or cached beside it."""

    __slots__ = (
        "_ref",
        "acks",
        "created_at",
        "history",
        "name",
        "ordinal",
        "profile",
        "state",
        "stop_done",
        "turn",
        "worker_id",
    )

    def __init__(
        self,
        worker_id: str,
        name: str | None,
        profile: Profile,
        ordinal: int,
        created_at: str,
        state: WorkerState,
    ) -> None:
        self.worker_id = worker_id
        self.name = name
        self.profile = profile
        self.ordinal = ordinal
        self.created_at = created_at
        self.state = state
        #: The turn in flight: its cancel scope, done event and outcome reasons.
        self.turn: Turn | None = None
        #: The first answer to each idempotency key (the keys themselves are in ``state``).
        self.acks: IdempotencyCache[InputAck] | None = None
        #: The conversation in the order the model sees it (the context policy keeps it);
        #: ``None`` until a recovered Worker's first turn starts.
        self.history: list[ContextMessage] | None = NO_HISTORY
        #: Set while a stop is under way: a concurrent stop waits for it.
        self.stop_done: anyio.Event | None = None
        self._ref: WorkerRef | None = None  # made on first use, then shared

    @property
    def status(self) -> WorkerStatus:
        return self.state.status

    @property
    def queued(self) -> int:
        return len(self.state.queue)

    def ref(self, runtime_id: str) -> WorkerRef:
        ref = self._ref
        if ref is None or ref.runtime_id != runtime_id:
            ref = self._ref = WorkerRef(runtime_id=runtime_id, worker_id=self.worker_id)
        return ref

    def stop_ack(self, runtime_id: str) -> StopAck | None:
        """The acknowledgement of the stop that made this Worker ``stopped``, if it is."""
        state = self.state
        if state.status != "stopped":
            return None
        return StopAck(
            worker_ref=self.ref(runtime_id),
            status="stopped",
            cursor=state.stop_cursor or state.last_cursor,
        )

    def summary(self, runtime_id: str) -> WorkerSummary:
        return worker_summary(
            self.ref(runtime_id),
            name=self.name,
            profile=self.profile.name,
            created_at=self.created_at,
            state=self.state,
        )

    def detail(self, runtime_id: str) -> WorkerDetail:
        return worker_detail(
            self.ref(runtime_id),
            name=self.name,
            profile_info=self.profile.info,
            created_at=self.created_at,
            state=self.state,
        )
