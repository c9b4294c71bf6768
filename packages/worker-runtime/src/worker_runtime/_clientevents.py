"""The :class:`~worker_runtime.api.EventStream` that :meth:`RuntimeClient.events` returns."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType

from ._event import Event


class _ClientEvents:
    """The :class:`~worker_runtime.api.EventStream` of :meth:`RuntimeClient.events`."""

    def __init__(self, stream: AsyncGenerator[Event | None, None]) -> None:
        self._stream = stream

    async def __aenter__(self) -> _ClientEvents:
        try:
            await anext(self._stream)  # None: connected
        except BaseException:
            await self._stream.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> _ClientEvents:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await anext(self._stream)
            if event is not None:  # None only when not entered: the connection opened
                return event
