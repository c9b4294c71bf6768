"""The remote source's :class:`~worker_runtime.RuntimeAPI` (``RemoteSource.api``): every verb
relayed to the source's client through the source's checks, and its event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from worker_runtime import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    Event,
    EventStream,
    InputAck,
    InputRequest,
    ProfileEntry,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerPage,
)

from .base import SourceEvents

if TYPE_CHECKING:
    from .remote import RemoteSource


class _Relay:
    """The remote's :class:`~worker_runtime.RuntimeAPI`, as the Backend relays it (see the
    module's docstring)."""

    def __init__(self, source: RemoteSource) -> None:
        self._source = source

    async def summary(self) -> RuntimeSummary:
        return await self._source._call(self._source._client.summary())

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        return await self._source._call(self._source._client.diagnostics(limit=limit))

    async def list_profiles(self) -> list[ProfileEntry]:
        return await self._source._call(self._source._client.list_profiles())

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        client = self._source._client
        return await self._source._call(
            client.list_workers(status=status, limit=limit, after=after)
        )

    async def create_worker(self, request: CreateWorkerRequest | None = None) -> WorkerDetail:
        return await self._source._call(self._source._client.create_worker(request))

    async def get_worker(self, worker_id: str, /) -> WorkerDetail:
        return await self._source._call(self._source._client.get_worker(worker_id))

    async def stop_worker(self, worker_id: str, /, *, reason: str | None = None) -> StopAck:
        client = self._source._client
        return await self._source._call(client.stop_worker(worker_id, reason=reason))

    async def cancel(
        self, worker_id: str, /, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        client = self._source._client
        return await self._source._call(client.cancel(worker_id, turn_id=turn_id, reason=reason))

    async def send_input(self, worker_id: str, request: InputRequest, /) -> InputAck:
        return await self._source._call(self._source._client.send_input(worker_id, request))

    async def read_transcript(
        self, worker_id: str, /, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        client = self._source._client
        return await self._source._call(client.read_transcript(worker_id, start=start, limit=limit))

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        return _Opening(self._source, worker_id, cursor)


class _Opening:
    """The remote source's stream (:meth:`RemoteSource.open_events`) as an
    :class:`~worker_runtime.EventStream`: entering it opens the stream."""

    def __init__(self, source: RemoteSource, worker_id: str | None, cursor: str | None) -> None:
        self._source, self._worker_id, self._cursor = source, worker_id, cursor
        self._events: AsyncIterator[Event] | None = None
        self._opened: SourceEvents | None = None

    async def __aenter__(self) -> _Opening:
        self._opened = await self._source.open_events(self._worker_id, self._cursor)
        self._events = aiter(self._opened)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._opened is not None:
            await self._opened.aclose()

    def __aiter__(self) -> _Opening:
        return self

    async def __anext__(self) -> Event:
        if self._events is None:
            raise StopAsyncIteration
        return await anext(self._events)
