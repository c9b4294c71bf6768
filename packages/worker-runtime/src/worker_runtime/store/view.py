"""An async, read-only :class:`~worker_runtime.api.RuntimeAPI` over an fs-store root
(``fs-store`` extra).

:class:`StoreView` wraps the synchronous :class:`~worker_runtime.store.fsread.FsStoreReader`:
every read first catches up with the store (a live process may be appending to it), then
reads, both in a worker thread so the event loop never waits on file I/O. It answers the
summary, the Worker list and detail and transcript pages; every command, the profile list
and the event stream are ``unsupported_operation``. A root that cannot be read as a store (or
that now belongs to another runtime) is ``runtime_unavailable`` with ``reason:
store_unreadable``; no error carries the root's path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio

from ..api import EventStream, RuntimeAPI
from ..errors import RuntimeUnavailable, StoreCorrupt, UnsupportedOperation
from ..events import Event, now_rfc3339
from ..models import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    InputAck,
    InputRequest,
    Limits,
    ProfileEntry,
    RuntimeCounts,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerPage,
)
from .fsread import FsStoreReader

__all__ = ["StoreState", "StoreView"]

T = TypeVar("T")

#: The ``kind`` an ``unsupported_operation`` of a view names in its details.
VIEW_KIND = "local_compatibility"


@dataclass(frozen=True)
class StoreState:
    """What one catch-up with the store found: its counts, whether a live process writes to
    it, and how many Worker records could not be read."""

    counts: RuntimeCounts
    writer_alive: bool
    skipped_workers: int


class StoreView:
    """A read-only view of one fs-store root, named by the store's runtime_id."""

    def __init__(self, reader: FsStoreReader, *, limits: Limits | None = None) -> None:
        """``reader``: a reader that has read its root once; ``limits``: the ones it was
        given (the summary reports them)."""
        self._reader = reader
        self._limits = limits or Limits()
        self._lock = anyio.Lock()
        self.runtime_id = reader.runtime_id
        self._opened_at = now_rfc3339()

    @classmethod
    async def open(cls, root: Path, *, limits: Limits | None = None) -> StoreView:
        """Read the root once (its runtime_id names the view). A root that is not a store
        raises the reader's typed error (``store_corrupt`` or ``runtime_unavailable``)."""
        reader = FsStoreReader(root, limits=limits)
        await anyio.to_thread.run_sync(reader.refresh)
        return cls(reader, limits=limits)

    def __repr__(self) -> str:
        return f"StoreView(runtime_id={self.runtime_id!r})"

    async def _read(self, call: Callable[[], T]) -> T:
        """Catch up with the store, then read, in a worker thread (both are file I/O)."""
        reader = self._reader

        def refresh_and_read() -> T:
            reader.refresh()
            if reader.runtime_id != self.runtime_id:
                raise StoreCorrupt("the store root now belongs to another runtime")
            return call()

        async with self._lock:
            try:
                return await anyio.to_thread.run_sync(refresh_and_read)
            except StoreCorrupt as exc:
                raise RuntimeUnavailable(
                    f"the local store cannot be read: {exc.message}",
                    details={"reason": "store_unreadable"},
                ) from None

    def _unsupported(self, operation: str) -> UnsupportedOperation:
        return UnsupportedOperation(
            f"{operation} is not supported: a local store is shown read-only",
            details={"runtime_id": self.runtime_id, "kind": VIEW_KIND},
        )

    async def state(self) -> StoreState:
        """Catch up with the store and say what it holds."""
        reader = self._reader
        return await self._read(
            lambda: StoreState(reader.counts(), reader.writer_alive, reader.skipped_workers)
        )

    # -- RuntimeAPI ------------------------------------------------------------------------

    async def summary(self) -> RuntimeSummary:
        state = await self.state()
        return RuntimeSummary(
            runtime_id=self.runtime_id,
            display_name=f"{self.runtime_id} (local store, read-only)",
            status="running",
            store="fs (read-only)",
            incarnation=self._reader.incarnation,
            capabilities=["read_only"],
            limits=self._limits,
            counts=state.counts,
            diagnostics_count=0,
            started_at=self._opened_at,
            subscribers=0,
        )

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        # A Runtime's diagnostics live in its process, not in its store.
        raise self._unsupported("reading a Runtime's diagnostics")

    async def list_profiles(self) -> list[ProfileEntry]:
        raise self._unsupported("listing profiles")

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        reader = self._reader
        return await self._read(
            lambda: reader.list_workers(status=status, limit=limit, after=after)
        )

    async def create_worker(self, request: CreateWorkerRequest | None = None) -> WorkerDetail:
        raise self._unsupported("create")

    async def get_worker(self, worker_id: str, /) -> WorkerDetail:
        return await self._read(lambda: self._reader.get_worker(worker_id))

    async def stop_worker(self, worker_id: str, /, *, reason: str | None = None) -> StopAck:
        raise self._unsupported("stop")

    async def cancel(
        self, worker_id: str, /, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        raise self._unsupported("cancel")

    async def send_input(self, worker_id: str, request: InputRequest, /) -> InputAck:
        raise self._unsupported("input")

    async def read_transcript(
        self, worker_id: str, /, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        reader = self._reader
        return await self._read(lambda: reader.read_transcript(worker_id, start=start, limit=limit))

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        return _Refused(self._unsupported("streaming events"))


class _Refused:
    """An event stream that refuses to open: entering it raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    async def __aenter__(self) -> _Refused:
        raise self._error

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __aiter__(self) -> _Refused:
        return self

    async def __anext__(self) -> Event:
        raise self._error


def _conforms(view: StoreView) -> RuntimeAPI:
    """mypy checks here that :class:`StoreView` implements ``RuntimeAPI``."""
    return view
