"""Test doubles for yoi's tests and for users' tests.

- :class:`ScriptedBackend` is an execution backend that plays a script, one
  :class:`ScriptedTurn` per turn: it yields given deltas, fails with a given error, or hangs until
  it is cancelled. It records what it was asked and which turns were really cancelled.
- :class:`EventCapture` subscribes to a Runtime in the background and lets a test wait for
  events.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from .errors import ExecutionError, ProviderError
from .events import Event, Subscription
from .execution import TextDelta, TurnRequest, TurnUsage
from .models import WorkerRef
from .runtime import Runtime

__all__ = ["EventCapture", "ScriptedBackend", "ScriptedTurn"]


@dataclass(frozen=True)
class ScriptedTurn:
    """What the scripted backend does for one turn: yield ``deltas`` (pausing ``delay_s``
    before each), then fail with ``error`` if given, or hang until cancelled if ``hang``, else
    report ``usage`` (default: one token per delta)."""

    deltas: tuple[str, ...] = ()
    delay_s: float = 0.0
    error: ExecutionError | None = None
    hang: bool = False
    usage: TurnUsage | None = None

    @classmethod
    def reply(
        cls, *deltas: str, delay_s: float = 0.0, usage: TurnUsage | None = None
    ) -> ScriptedTurn:
        return cls(deltas=deltas, delay_s=delay_s, usage=usage)

    @classmethod
    def fail(cls, error: ExecutionError, *deltas: str) -> ScriptedTurn:
        return cls(deltas=deltas, error=error)

    @classmethod
    def hang_after(cls, *deltas: str) -> ScriptedTurn:
        return cls(deltas=deltas, hang=True)


class ScriptedBackend:
    """An execution backend that plays :class:`ScriptedTurn` items in order (then
    ``default``, if set; with nothing left a turn fails with ``provider_error``).

    ``requests`` holds every :class:`TurnRequest` it was given; ``cancelled`` and ``finished``
    the turn ids whose stream was really cancelled, or ran to the end.
    """

    def __init__(self, *turns: ScriptedTurn, default: ScriptedTurn | None = None) -> None:
        self.script: deque[ScriptedTurn] = deque(turns)
        self.default = default
        self.requests: list[TurnRequest] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self._started = anyio.Event()

    def push(self, *turns: ScriptedTurn) -> None:
        self.script.extend(turns)

    async def wait_started(self, count: int = 1, *, timeout: float = 5.0) -> TurnRequest:
        """Wait until ``count`` turns have started; returns the newest request."""
        with anyio.fail_after(timeout):
            while len(self.requests) < count:
                await self._started.wait()
        return self.requests[-1]

    async def stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        step = self.script.popleft() if self.script else self.default
        self.requests.append(request)
        started, self._started = self._started, anyio.Event()
        started.set()
        if step is None:
            raise ProviderError("the scripted backend has no turn left to play")
        try:
            for delta in step.deltas:
                if step.delay_s:
                    await anyio.sleep(step.delay_s)
                yield TextDelta(delta)
            if step.error is not None:
                raise step.error
            if step.hang:
                await anyio.sleep(math.inf)
            yield step.usage or TurnUsage(
                input_tokens=sum(len(m.content.split()) for m in request.messages),
                output_tokens=len(step.deltas),
            )
            self.finished.append(request.turn_id)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(request.turn_id)
            raise


class EventCapture:
    """Collects a Runtime's events in the background::

    async with EventCapture(runtime, worker=worker_id) as capture:
        ...
        await capture.wait_for("turn_completed")
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        worker: str | WorkerRef | None = None,
        cursor: str | None = None,
    ) -> None:
        self._runtime = runtime
        self._worker = worker
        self._cursor = cursor
        self.events: list[Event] = []
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None
        self._subscription: Subscription | None = None

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    async def wait_for(
        self,
        kind: str | Callable[[Event], bool],
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> Event:
        """Wait until ``count`` captured events match ``kind`` (a kind or a predicate)."""
        match = kind if callable(kind) else (lambda e: e.kind == kind)
        with anyio.fail_after(timeout):
            while True:
                found = [e for e in self.events if match(e)]
                if len(found) >= count:
                    return found[count - 1]
                await self._changed.wait()

    async def _pump(self, subscription: Subscription) -> None:
        async for event in subscription:
            self.events.append(event)
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    async def __aenter__(self) -> EventCapture:
        self._subscription = self._runtime.subscribe(cursor=self._cursor, worker=self._worker)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._pump, self._subscription)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tg is None or self._subscription is None:
            return
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)
        await self._subscription.aclose()
