"""One Worker's side of the fs store: its projection state and files, and their record
formats (private to ``store.fs``).

``workers/<enc>/`` holds ``worker.json`` (the record), ``transcript.jsonl|.idx`` (the
transcript projection: ``{"s", "t", "r", "c", "u", "a"}`` entries and ``{"m": turn_id}`` turn
markers), ``events.jsonl|.idx`` (the positions of the Worker's events in the log, its
``worker_created`` event's position aside, which is in its record), and, once it has an event
after its creation, ``state.json`` and ``overview.json`` (checkpoint snapshots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..events import Event
from . import TranscriptEntry, WorkerRecord
from ._fsfiles import IndexedLog
from ._projection import WorkerState, transcript_entry

__all__ = [
    "WorkerFiles",
    "entry_line",
    "entry_of",
    "overview_of",
    "record_of",
    "transcript_lines",
]


def entry_line(entry: TranscriptEntry) -> bytes:
    record: dict[str, Any] = {
        "s": entry.sequence,
        "t": entry.turn_id,
        "r": entry.role,
        "c": entry.content,
        "u": entry.cursor,
        "a": entry.at,
    }
    if entry.partial:
        record["p"] = True
    line: bytes = orjson.dumps(record) + b"\n"
    return line


def entry_of(raw: dict[str, Any]) -> TranscriptEntry:
    return TranscriptEntry(
        raw["s"], raw["t"], raw["r"], raw["c"], raw["u"], raw["a"], bool(raw.get("p", False))
    )


class WorkerFiles:
    """The store's side of one Worker: its projection state and (made on first use) its
    projection files."""

    __slots__ = (
        "_dir",
        "_events",
        "_name",
        "_parent",
        "_transcript",
        "catalog_line",
        "checkpointed",
        "created",
        "cut_sizes",
        "mode",
        "pending_positions",
        "pending_transcript",
        "record_json",
        "state",
    )

    def __init__(
        self, directory: Path | tuple[Path, str], state: WorkerState, created: int, mode: int
    ) -> None:
        self.mode = mode  # of its files when they are created
        # The Path of 10,000 Worker directories costs more than the rest of an open: it is
        # made on first use.
        self._dir: Path | None = None
        if isinstance(directory, tuple):
            self._parent, self._name = directory
        else:
            self._dir = directory
            self._parent, self._name = directory.parent, directory.name
        self.state = state
        self.created = max(1, created)  # position of the Worker's worker_created event
        self.pending_transcript: list[tuple[bytes, bool]] = []
        self.pending_positions: list[tuple[bytes, bool]] = []
        self.checkpointed = 0
        #: The sizes the projection files are cut back to before they are next touched
        #: (after an unclean shutdown; ``None`` once done or when not needed).
        self.cut_sizes: dict[str, list[int]] | None = None
        self.record_json: dict[str, Any] = {}
        self.catalog_line = b""  # the Worker's newest catalog line
        self._transcript: IndexedLog | None = None
        self._events: IndexedLog | None = None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            self._dir = self._parent / self._name
        return self._dir

    @property
    def transcript(self) -> IndexedLog:
        if self._transcript is None:
            self._transcript = IndexedLog(
                self.dir / "transcript.jsonl", self.dir / "transcript.idx", self.mode
            )
        return self._transcript

    @property
    def events(self) -> IndexedLog:
        if self._events is None:
            self._events = IndexedLog(self.dir / "events.jsonl", self.dir / "events.idx", self.mode)
        return self._events


def record_of(raw: dict[str, Any], worker_id: str) -> WorkerRecord:
    record = WorkerRecord(
        worker_id=raw["worker_id"],
        name=raw["name"],
        profile=raw["profile"],
        created_at=raw["created_at"],
        ordinal=int(raw["ordinal"]),
        position=int(raw.get("position", 0)),
    )
    if record.worker_id != worker_id:
        raise ValueError("worker_id does not match its directory")
    return record


def overview_of(state: WorkerState) -> dict[str, Any]:
    return {
        "turns": {
            "total": state.turns_total,
            "completed": state.completed,
            "failed": state.failed,
            "cancelled": state.cancelled,
            "interrupted": state.interrupted,
        },
        "usage": {"input_tokens": state.input_tokens, "output_tokens": state.output_tokens},
        "transcript_len": state.transcript_len,
        "last_activity_at": state.last_activity_at,
        "last_cursor": state.last_cursor,
    }


def transcript_lines(event: Event) -> list[tuple[bytes, bool]]:
    """The transcript projection lines an event adds (a turn marker, or an entry, or none)."""
    if event.kind == "turn_started":
        return [(orjson.dumps({"m": event.turn_id}) + b"\n", False)]
    entry = transcript_entry(event.kind, event.turn_id, event.cursor or "", event.at, event.data)
    return [(entry_line(entry), True)] if entry is not None else []
