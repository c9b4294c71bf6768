"""The in-memory store: nothing survives the process.

The event backlog lives in the Runtime's event log; this store keeps the transcripts, which it
projects from the events. Each start is a new incarnation, so cursors of an earlier process are
``cursor_unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..events import Event, new_incarnation
from ..execution import ContextMessage
from ..models import Limits
from . import HistoryMark, StoreDiagnostic, StoreOpened, TranscriptEntry, WorkerRecord
from ._projection import transcript_entry

__all__ = ["MemoryStore"]

_TRANSCRIPT_KINDS = frozenset({"input_accepted", "message_completed", "turn_failed"})


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

    def add_worker(self, record: WorkerRecord) -> None:
        """Nothing to record beyond the Runtime's own state."""

    def append_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind not in _TRANSCRIPT_KINDS or event.worker_id is None:
                continue
            entry = transcript_entry(
                event.kind, event.turn_id, event.cursor or "", event.at, event.data
            )
            if entry is None:
                continue
            entries = self._transcripts.get(event.worker_id)
            if entries is None:
                entries = self._transcripts[event.worker_id] = []
            entries.append(entry)

    def flush(self) -> None:
        """Nothing to write."""

    async def sync(self) -> None:
        """Nothing to flush."""

    async def maintain(self) -> None:
        """Nothing to keep up."""

    def read_events(self, after: int, limit: int, worker_id: str | None) -> list[Event] | None:
        """The in-memory backlog is all there is."""
        return None

    async def read_events_async(
        self, after: int, limit: int, worker_id: str | None
    ) -> list[Event] | None:
        return None

    @property
    def oldest_position(self) -> int:
        return 1

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        return self._transcripts.get(worker_id, [])[start : start + limit]

    def mark_history(self, worker_id: str) -> HistoryMark:
        """Memory Workers are never recovered; their history lives in the Runtime."""
        return HistoryMark(worker_id, 0, 0)

    async def read_history(
        self, mark: HistoryMark, max_tokens: int | None = None
    ) -> list[ContextMessage]:
        return []

    def take_diagnostics(self) -> list[StoreDiagnostic]:
        return []

    async def close(self) -> None:
        """Nothing to release."""
