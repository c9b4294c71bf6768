"""A subscription: an async iterator that pulls events from the backlog after a cursor."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Final

from ._event import Event

if TYPE_CHECKING:
    from .events import EventLog


class _Gap(Exception):
    """The backlog no longer holds the next event a reader needs."""


class Subscription:
    """An async iterator over the events after a cursor, runtime-wide or for one Worker.

    Use it as ``async with runtime.subscribe(...) as events: async for event in events``. It
    ends after a ``resync_required`` notice (it fell behind the backlog) or a
    ``runtime_shutdown`` notice (the Runtime closed); closing it frees it at once.
    """

    _BATCH: Final = 512

    def __init__(self, log: EventLog, position: int, worker_id: str | None) -> None:
        self._log = log
        self._position = position
        self._worker_id = worker_id
        self._batch: list[Event] = []
        self._index = 0
        self.closed = False

    @property
    def worker_id(self) -> str | None:
        return self._worker_id

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._index < len(self._batch):
                event = self._batch[self._index]
                self._index += 1
                return event
            if self.closed:
                raise StopAsyncIteration
            log = self._log
            try:
                batch = await log.read_after_async(self._position, self._BATCH, self._worker_id)
            except _Gap:
                self.closed = True
                return log.notice(
                    "resync_required",
                    "this subscriber fell behind the retained backlog; re-read the "
                    "transcript and subscribe again from its cursor",
                    self._worker_id,
                )
            if batch:
                self._batch = batch
                self._index = 0
                self._position = batch[-1].position
                continue
            if log.closed:
                self.closed = True
                return log.notice("runtime_shutdown", "the Runtime is shutting down", None)
            await log.wait(self._worker_id)

    def ready(self) -> list[Event]:
        """The events already read from the log that the iterator would yield next without
        waiting (possibly none); they count as delivered. Lets a consumer that writes to a
        socket send a run of events at once."""
        batch, index = self._batch, self._index
        if index >= len(batch):
            return []
        self._index = len(batch)
        return batch[index:]

    async def aclose(self) -> None:
        """Stop the subscription and release it."""
        self.closed = True
        self._batch = []
        self._index = 0

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
