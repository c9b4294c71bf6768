"""Helpers for the fs store's part tests: a root on a temp directory, its log and projections,
and events written the way the Runtime writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker_runtime.events import Event
from worker_runtime.store import WorkerRecord
from worker_runtime.store._fscheckpoint import Checkpoints
from worker_runtime.store._fslog import SegmentedLog
from worker_runtime.store._fsprojections import Projections
from worker_runtime.store._fsroot import FsyncMode, StoreRoot

AT = "2026-01-01T00:00:00.000000Z"


def make_root(path: Path, fsync: FsyncMode = "never") -> StoreRoot:
    """A root (its directories made) whose runtime id is ``rt``."""
    root = StoreRoot(path, fsync=fsync, file_mode=0o600, dir_mode=0o700)
    for d in (root.path, root.events_dir, root.workers_dir):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.runtime_id = "rt"
    return root


def event(position: int, kind: str, worker_id: str | None, **data: Any) -> Event:
    return Event(position, f"c{position}", kind, "rt", worker_id, data.pop("turn", None), AT, data)


def note(position: int, worker_id: str, sequence: int, content: str) -> Event:
    """A system input, which adds one transcript entry."""
    return event(
        position,
        "input_accepted",
        worker_id,
        input_kind="system",
        transcript_sequence=sequence,
        content=content,
    )


def record(worker_id: str, position: int, ordinal: int = 1) -> WorkerRecord:
    return WorkerRecord(worker_id, None, {"kind": "builtin", "name": "echo"}, AT, ordinal, position)


class Parts:
    """A store's parts, wired as ``FsRuntimeStore`` wires them, on one root."""

    def __init__(self, path: Path, *, segment_max: int = 100, interval: float = 0.0) -> None:
        self.root = make_root(path)
        self.log = SegmentedLog(self.root, segment_max=segment_max, max_segments=None)
        self.projections = Projections(self.root, self.log)
        self.checkpoints = Checkpoints(self.root, self.log, self.projections, interval=interval)
        self.head = self.log.open(self.root.read_checkpoint())

    def append(self, *events: Event) -> None:
        self.log.append(events)
        self.projections.apply(events)

    def worker(self, worker_id: str, **kw: Any) -> None:
        """A Worker made as the Runtime makes one: its record, then its creation event."""
        position = self.log.appended + 1
        self.projections.add(record(worker_id, position, **kw))
        self.append(event(position, "worker_created", worker_id))

    def notes(self, worker_id: str, *contents: str) -> None:
        files = self.projections.workers[worker_id]
        for content in contents:
            sequence = files.state.transcript_len + 1
            self.append(note(self.log.appended + 1, worker_id, sequence, content))

    def two_workers(self) -> None:
        """Workers w1 and w2 with interleaved notes (w1: one, two; w2: other), flushed."""
        self.worker("w1")
        self.worker("w2", ordinal=2)
        self.notes("w1", "one")
        self.notes("w2", "other")
        self.notes("w1", "two")
        self.projections.flush(["w1", "w2"])
