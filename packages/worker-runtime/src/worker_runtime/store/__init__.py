"""The store interface of the Runtime (SPEC §5) and its in-memory implementation.

The Runtime keeps its working state in memory and writes through a store. Writes are recorded
in call order (``append_*``) and made durable by :meth:`RuntimeStore.sync`, which the Runtime
awaits before it acknowledges a command or lets a subscriber see an event. Reads of the
transcript go through the store, so a durable store can serve bounded pages from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ..events import Event
from ..models import Limits

__all__ = ["RuntimeStore", "StoreOpened", "TranscriptEntry"]


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


@dataclass(frozen=True, slots=True)
class StoreOpened:
    """What the Runtime learns from opening its store."""

    runtime_id: str
    incarnation: str
    head: int


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
        """Open (or create) the store for ``runtime_id``."""
        ...

    def append_events(self, events: Sequence[Event]) -> None:
        """Record events, in log order."""
        ...

    def append_transcript(self, worker_id: str, entry: TranscriptEntry) -> None:
        """Record a Worker's next transcript entry."""
        ...

    async def sync(self) -> None:
        """Make everything recorded so far durable (per the store's policy)."""
        ...

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        """Entries ``start`` (0-based offset) to ``start + limit`` of a Worker's transcript."""
        ...

    async def close(self) -> None:
        """Flush and release the store."""
        ...
