"""The store interface of the Runtime (contract §5) and its in-memory implementation.

The Runtime keeps its working state in memory and writes through a store. The event log is the
source of truth: a store records events in log order (``append_events``) and derives each
Worker's transcript from them. :meth:`RuntimeStore.flush` hands everything recorded to the OS
(enough to survive a killed process); :meth:`RuntimeStore.sync` makes it durable per the
store's policy. The Runtime awaits ``sync`` before it acknowledges a command, and publishes an
event to subscribers only once it was flushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..models import Limits, TranscriptItem, TranscriptPage, WorkerRef

if TYPE_CHECKING:
    from ..events import Event
    from ..execution import ContextMessage
    from ._projection import WorkerState

__all__ = [
    "HistoryMark",
    "RecoveredWorker",
    "RuntimeStore",
    "StoreDiagnostic",
    "StoreOpened",
    "TranscriptEntry",
    "WorkerRecord",
    "transcript_page",
]


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """A committed transcript entry of one Worker (``sequence`` is 1-based per Worker)."""

    sequence: int
    turn_id: str | None
    role: Literal["user", "system", "assistant", "error"]
    content: str
    cursor: str
    at: str
    partial: bool = False


def transcript_page(
    ref: WorkerRef,
    entries: Sequence[TranscriptEntry],
    *,
    start: int,
    limit: int,
    total: int,
    cursor: str,
) -> TranscriptPage:
    """The page of ``entries`` (those from offset ``start``) of a transcript of ``total``."""
    items = [
        TranscriptItem(
            sequence=e.sequence,
            turn_id=e.turn_id,
            role=e.role,
            content=e.content,
            cursor=e.cursor,
            at=e.at,
            partial=e.partial,
        )
        for e in entries
    ]
    end = start + len(items)
    return TranscriptPage(
        worker_ref=ref,
        start=start,
        limit=limit,
        total_items=total,
        items=items,
        next_start=end if items and end < total else None,
        cursor=cursor,
    )


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """What a Worker was created with: its record in the store (``worker.json``)."""

    worker_id: str
    name: str | None
    profile: dict[str, Any]
    created_at: str
    ordinal: int
    position: int  # of its worker_created event


@dataclass(frozen=True, slots=True)
class HistoryMark:
    """Where a recovered Worker's conversation on disk ended when the Runtime started keeping
    the rest in memory (``size`` bytes and ``count`` entries of its transcript)."""

    worker_id: str
    size: int
    count: int


@dataclass(frozen=True, slots=True)
class RecoveredWorker:
    """A Worker found when a store was opened: its record and the projection of its events."""

    record: WorkerRecord
    state: WorkerState


@dataclass(frozen=True, slots=True)
class StoreDiagnostic:
    """Something the store noticed (a repair, a skipped Worker …); never holds a path."""

    severity: Literal["info", "warning", "error"]
    code: str
    message: str
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoreOpened:
    """What the Runtime learns from opening its store."""

    runtime_id: str
    incarnation: str
    head: int
    workers: Sequence[RecoveredWorker] = field(default_factory=tuple)
    diagnostics: Sequence[StoreDiagnostic] = field(default_factory=tuple)


@runtime_checkable
class RuntimeStore(Protocol):
    """Persistence of one Runtime. ``kind`` is ``memory`` or ``fs``."""

    @property
    def kind(self) -> str: ...

    @property
    def durable(self) -> bool:
        """Whether synced writes survive the process."""
        ...

    async def open(self, *, runtime_id: str, limits: Limits) -> StoreOpened:
        """Open (or create) the store for ``runtime_id`` and recover what it holds."""
        ...

    def add_worker(self, record: WorkerRecord) -> None:
        """Record a new Worker (before its ``worker_created`` event); may raise an I/O
        error, in which case nothing was created."""
        ...

    def append_events(self, events: Sequence[Event]) -> None:
        """Record events, in log order."""
        ...

    def flush(self) -> None:
        """Hand everything recorded to the OS (no fsync)."""
        ...

    async def sync(self) -> None:
        """Make everything recorded so far durable (per the store's policy)."""
        ...

    async def maintain(self) -> None:
        """Background upkeep after a commit was published (the fs store's checkpoint slices);
        may raise an I/O error like :meth:`sync`."""
        ...

    def read_events(self, after: int, limit: int, worker_id: str | None) -> list[Event] | None:
        """Events after a position that the in-memory backlog no longer holds, or ``None``
        when the store does not hold them either."""
        ...

    @property
    def oldest_position(self) -> int:
        """The oldest event position :meth:`read_events` can still return."""
        ...

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        """Entries ``start`` (0-based offset) to ``start + limit`` of a Worker's transcript."""
        ...

    async def read_events_async(
        self, after: int, limit: int, worker_id: str | None
    ) -> list[Event] | None:
        """:meth:`read_events` for async code: disk reads run off the event loop."""
        ...

    def mark_history(self, worker_id: str) -> HistoryMark:
        """Where a recovered Worker's conversation in the store ends now (the Runtime keeps
        what follows in memory). Bounded: never reads the conversation itself."""
        ...

    async def read_history(
        self, mark: HistoryMark, max_tokens: int | None = None
    ) -> list[ContextMessage]:
        """A recovered Worker's conversation up to ``mark`` in model order, read off the event
        loop (with ``max_tokens``, at least the newest entries a context of that budget can
        hold; a store may return more)."""
        ...

    def take_diagnostics(self) -> list[StoreDiagnostic]:
        """Diagnostics the store recorded since the last call."""
        ...

    async def close(self) -> None:
        """Flush and release the store."""
        ...
