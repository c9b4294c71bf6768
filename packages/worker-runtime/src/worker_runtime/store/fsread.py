"""A read-only view of a filesystem store root (``fs-store`` extra).

:class:`FsStoreReader` projects the Workers of a store root (list, detail, transcript) without
taking the store's lock and without writing anything, so it can look at a root that a live
Runtime process is appending to, or at one that no process serves any more.

It reads what the writer makes safe to read:

- ``runtime.json``, worker records and ``state.json`` snapshots are replaced atomically;
- the transcript projection is read only up to the size its snapshot recorded (the writer
  appends past it);
- the event log is followed from the last checkpoint by whole lines only (a line still being
  written has no newline yet), and positions apply at most once.

When the writer reopens the store (it may then repair files), ``runtime.json`` is replaced,
and the next :meth:`FsStoreReader.refresh` rebuilds the view from scratch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from .._checks import check_limit
from ..errors import InvalidInput, StoreCorrupt, WorkerNotFound
from ..events import encode_cursor
from ..models import (
    Limits,
    ProfileInfo,
    RuntimeCounts,
    TranscriptPage,
    WorkerDetail,
    WorkerPage,
    WorkerRef,
    WorkerSummary,
)
from ..profiles import Profile
from ..state import STATUSES, worker_detail, worker_summary
from . import TranscriptEntry, transcript_page
from ._fsfiles import decode_id, encode_id, io_errors, read_json, read_json_if_present
from ._fsroot import SCHEMA_VERSION
from ._fsworkers import entry_of
from ._projection import WorkerState, transcript_entry

__all__ = ["FsStoreReader"]

_STATUSES = STATUSES


@dataclass
class _Worker:
    worker_id: str
    name: str | None
    profile: ProfileInfo
    created_at: str
    state: WorkerState
    base_bytes: int = 0  # the checkpointed part of transcript.jsonl
    base_items: int = 0
    tail: list[TranscriptEntry] = field(default_factory=list)  # entries after the checkpoint


def _profile_info(raw: Any) -> ProfileInfo:
    """What clients see of a Worker's stored profile (``Profile.info``); for a record that no
    longer validates, or only a profile's name (a ``worker_created`` event), just its name."""
    try:
        return Profile.model_validate(raw).info
    except ValidationError:
        name = raw.get("name") if isinstance(raw, dict) else raw
        return ProfileInfo(name=str(name or "unknown"), provider="unknown", model=None)


def _status(state: WorkerState) -> str:
    return state.status if state.status in _STATUSES else "idle"


class FsStoreReader:
    """A read-only, lock-free projection of one fs-store root. Not thread-safe: call
    :meth:`refresh` and the readers from one thread at a time."""

    def __init__(self, root: Path, *, limits: Limits | None = None) -> None:
        self._root = root
        self._limits = limits or Limits()
        self._identity: tuple[int, int] | None = None
        self.runtime_id = ""
        self.incarnation = ""
        self.clean_shutdown = True
        self.skipped_workers = 0
        self._workers: dict[str, _Worker] = {}
        self._segment = 0  # first position of the segment being followed
        self._offset = 0  # bytes of it consumed
        self._position = 0  # newest position applied

    def __repr__(self) -> str:
        return f"FsStoreReader(runtime_id={self.runtime_id!r})"

    # -- following the store ---------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with the store: new events since the last call, or everything again when
        the writer reopened the store. Raises :class:`StoreCorrupt` or ``StoreIOError`` (no
        path in either) when the root cannot be read as a store."""
        with io_errors("reading a store root"):
            for _ in range(3):
                identity = self._stat_record()
                if identity != self._identity:
                    self._load()
                self._follow()
                if self._stat_record() == identity:
                    self._identity = identity
                    return
                self._identity = None  # reopened while being read: read it again
        raise StoreCorrupt("the store kept changing while it was read")

    @property
    def writer_alive(self) -> bool:
        """Whether a process that did not shut down cleanly still runs (its pid is in the
        lock file): the store is being written to, not left behind by a crash."""
        if self.clean_shutdown:
            return False
        try:
            pid = int((self._root / "runtime.lock").read_text().strip() or "0")
        except (OSError, ValueError):
            return False
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _stat_record(self) -> tuple[int, int]:
        try:
            st = os.stat(self._root / "runtime.json")
        except FileNotFoundError:
            raise StoreCorrupt("the directory is not a store root (no runtime.json)") from None
        return st.st_ino, st.st_mtime_ns

    def _load(self) -> None:
        try:
            record = read_json(self._root / "runtime.json")
            if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
                raise ValueError("unknown schema_version")
            runtime_id, incarnation = record["runtime_id"], record["incarnation"]
            if not isinstance(runtime_id, str) or not isinstance(incarnation, str):
                raise ValueError("runtime_id and incarnation must be strings")
        except (ValueError, KeyError) as exc:
            raise StoreCorrupt(f"runtime.json is not readable: {exc}") from None
        self.runtime_id, self.incarnation = runtime_id, incarnation
        self.clean_shutdown = bool(record.get("clean_shutdown", False))
        try:  # first: every snapshot read after it reflects the log at least up to it
            checkpoint = int(read_json(self._root / "events" / "checkpoint.json")["position"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            checkpoint = 0  # none yet, or unreadable: follow the log from the start
        self._workers = {}
        self.skipped_workers = 0
        start = checkpoint + 1
        loaded: list[tuple[int, _Worker]] = []
        workers_dir = self._root / "workers"
        names = sorted(os.listdir(workers_dir)) if workers_dir.is_dir() else []
        for name in names:
            worker_id = decode_id(name)
            if worker_id is None:
                continue
            try:
                ordinal, created, worker = self._load_worker(workers_dir / name, worker_id)
            except FileNotFoundError:
                continue  # created after the last sync: its worker_created event adds it
            except (ValueError, KeyError, TypeError):
                self.skipped_workers += 1
                continue
            if worker.state.position == 0:
                start = min(start, created)
            loaded.append((ordinal, worker))
        for _, worker in sorted(loaded, key=lambda item: item[0]):
            self._workers[worker.worker_id] = worker
        self._position = start - 1
        self._segment, self._offset = 0, 0

    @staticmethod
    def _load_worker(directory: Path, worker_id: str) -> tuple[int, int, _Worker]:
        raw = read_json(directory / "worker.json")
        if raw["worker_id"] != worker_id:
            raise ValueError("worker_id does not match its directory")
        worker = _Worker(
            worker_id=worker_id,
            name=raw["name"],
            profile=_profile_info(raw["profile"]),
            created_at=raw["created_at"],
            state=WorkerState(worker_id=worker_id),
        )
        snapshot = read_json_if_present(directory / "state.json")
        if snapshot is not None:
            worker.state = WorkerState.from_json(snapshot["state"])
            worker.base_bytes, count = snapshot["files"]["transcript"]
            worker.base_items = min(count, worker.state.transcript_len)
        return int(raw["ordinal"]), int(raw.get("position", 0)), worker

    def _segments(self) -> list[int]:
        events = self._root / "events"
        names = os.listdir(events) if events.is_dir() else []
        return sorted(int(n[:-6]) for n in names if n.endswith(".jsonl") and n[:-6].isdigit())

    def _follow(self) -> None:
        """Apply the whole lines of the log after the newest position applied."""
        firsts = self._segments()
        if not firsts:
            return
        if self._segment not in firsts:  # first read, or pruned: start where the position is
            wanted = self._position + 1
            candidates = [f for f in firsts if f <= wanted]
            self._segment = candidates[-1] if candidates else firsts[0]
            self._offset = 0
        for first in firsts[firsts.index(self._segment) :]:
            if first != self._segment:
                self._segment, self._offset = first, 0
            with open(self._root / "events" / f"{first:020d}.jsonl", "rb") as f:
                f.seek(self._offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            for line in data[:end].split(b"\n"):
                if line:
                    self._apply(line)
            self._offset += end

    def _apply(self, line: bytes) -> None:
        try:
            raw = orjson.loads(line)
            position = raw["p"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # a quarantined slot or a record the writer will quarantine
        if not isinstance(position, int) or position <= self._position:
            return
        self._position = position
        kind, worker_id, data = raw.get("k"), raw.get("w"), raw.get("d") or {}
        worker = self._workers.get(worker_id) if isinstance(worker_id, str) else None
        if worker is None and kind == "worker_created" and isinstance(worker_id, str):
            summary = data.get("worker") or {}
            worker = self._workers[worker_id] = _Worker(
                worker_id=worker_id,
                name=summary.get("name"),
                profile=self._profile_of(worker_id, summary.get("profile")),
                created_at=str(summary.get("created_at") or raw.get("a", "")),
                state=WorkerState(worker_id=worker_id),
            )
        if worker is None or position <= worker.state.position:
            return
        cursor, at, turn_id = raw.get("c") or "", raw.get("a") or "", raw.get("t")
        try:
            worker.state.apply(position, kind, turn_id, cursor, at, data)
            entry = transcript_entry(kind, turn_id, cursor, at, data)
        except (KeyError, TypeError, ValueError):
            return
        if entry is not None:
            worker.tail.append(entry)

    def _profile_of(self, worker_id: str, name: Any) -> ProfileInfo:
        """The profile a Worker's record names, if the record is written yet."""
        try:
            raw = read_json(self._root / "workers" / encode_id(worker_id) / "worker.json")
            return _profile_info(raw["profile"])
        except (OSError, ValueError, KeyError, InvalidInput):
            return _profile_info(name)

    # -- reading -----------------------------------------------------------------------------

    def _worker(self, worker_id: str) -> _Worker:
        worker = self._workers.get(worker_id)
        if worker is None:
            raise WorkerNotFound("no Worker with that id", details={"worker_id": worker_id[:200]})
        return worker

    def _summary(self, w: _Worker) -> WorkerSummary:
        ref = WorkerRef(runtime_id=self.runtime_id, worker_id=w.worker_id)
        return worker_summary(
            ref,
            name=w.name,
            profile=w.profile.name,
            created_at=w.created_at,
            state=w.state,
            head_cursor=self.head_cursor,
        )

    def counts(self) -> RuntimeCounts:
        """How many Workers the store holds, by status (as ``Runtime.summary().counts``)."""
        statuses = [_status(w.state) for w in self._workers.values()]
        return RuntimeCounts(
            workers=len(statuses),
            idle=statuses.count("idle"),
            running=statuses.count("running"),
            stopped=statuses.count("stopped"),
        )

    @property
    def head_cursor(self) -> str:
        return encode_cursor(self.incarnation, self._position)

    def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        """A page of Workers in creation order, as ``Runtime.list_workers``."""
        limit = check_limit(limit, 100, self._limits.max_list_workers)
        if status is not None and status not in _STATUSES:
            raise InvalidInput(
                "status must be one of idle, running, stopped", details={"field": "status"}
            )
        workers = list(self._workers.values())
        start = 0
        if after is not None:
            ids = [w.worker_id for w in workers]
            if after not in ids:
                raise InvalidInput(
                    "after must be the worker_id of a Worker of this Runtime",
                    details={"field": "after"},
                )
            start = ids.index(after) + 1
        page: list[WorkerSummary] = []
        next_after: str | None = None
        for w in workers[start:]:
            summary = self._summary(w)
            if status is not None and summary.status != status:
                continue
            if len(page) == limit:
                next_after = page[-1].worker_id
                break
            page.append(summary)
        return WorkerPage(workers=page, next_after=next_after)

    def get_worker(self, worker_id: str) -> WorkerDetail:
        w = self._worker(worker_id)
        ref = WorkerRef(runtime_id=self.runtime_id, worker_id=w.worker_id)
        return worker_detail(
            ref,
            name=w.name,
            profile_info=w.profile,
            created_at=w.created_at,
            state=w.state,
            head_cursor=self.head_cursor,
        )

    def read_transcript(
        self, worker_id: str, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        """A transcript page, as ``Runtime.read_transcript``; its ``cursor`` is the head of
        the log as far as this reader has followed it."""
        w = self._worker(worker_id)
        limit = check_limit(limit, 100, self._limits.max_transcript_items)
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise InvalidInput("start must be an integer >= 0", details={"field": "start"})
        entries = self._entries(w)
        return transcript_page(
            WorkerRef(runtime_id=self.runtime_id, worker_id=w.worker_id),
            entries[start : start + limit],
            start=start,
            limit=limit,
            total=len(entries),
            cursor=self.head_cursor,
        )

    def _entries(self, w: _Worker) -> list[TranscriptEntry]:
        """The checkpointed entries (from the projection file, up to its recorded size) and
        the ones followed from the log since, in sequence order without gaps."""
        base: list[TranscriptEntry] = []
        if w.base_items:
            path = self._root / "workers" / encode_id(w.worker_id) / "transcript.jsonl"
            with io_errors("reading a transcript"), open(path, "rb") as f:
                data = f.read(w.base_bytes)
            for line in data.split(b"\n"):
                try:
                    record = orjson.loads(line) if line else None
                except orjson.JSONDecodeError:
                    record = None
                if isinstance(record, dict) and "s" in record:
                    base.append(entry_of(record))
        entries = base[: w.base_items] + [e for e in w.tail if e.sequence > w.base_items]
        if any(e.sequence != i + 1 for i, e in enumerate(entries)):
            self._identity = None  # the writer repaired its files: reload on the next refresh
            raise StoreCorrupt("the transcript changed while it was read; read it again")
        return entries
