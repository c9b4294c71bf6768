"""The in-memory store: nothing survives the process.

The event backlog lives in the Runtime's event log; this store keeps the transcripts. Each
start is a new incarnation, so cursors of an earlier process are ``cursor_unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..events import Event, new_incarnation
from ..models import Limits
from . import StoreOpened, TranscriptEntry

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~worker_runtime.store.RuntimeStore` that keeps everything in memory."""

    kind = "memory"
    durable = False

    def __init__(self) -> None:
        self._transcripts: dict[str, list[TranscriptEntry]] = {}
        self._opened = False

    async def open(self, *, runtime_id: str, limits: Limits) -> StoreOpened:
        if self._opened:
            raise RuntimeError("a MemoryStore serves one Runtime, once")
        self._opened = True
        return StoreOpened(runtime_id=runtime_id, incarnation=new_incarnation(), head=0)

    def append_events(self, events: Sequence[Event]) -> None:
        """The backlog is the Runtime's event log; nothing more is kept."""

    def append_transcript(self, worker_id: str, entry: TranscriptEntry) -> None:
        entries = self._transcripts.get(worker_id)
        if entries is None:
            entries = self._transcripts[worker_id] = []
        entries.append(entry)

    async def sync(self) -> None:
        """Nothing to flush."""

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        return self._transcripts.get(worker_id, [])[start : start + limit]

    async def close(self) -> None:
        """Nothing to release."""
