"""The filesystem store (``fs-store`` extra): a Runtime that survives its process.

Layout (ids are encoded into path components, see ``_fsfiles.encode_id``)::

    <root>/runtime.json                  runtime record + config snapshot
    <root>/runtime.lock                  held (flock) by the live process
    <root>/events/active.json            the active-segment pointer
    <root>/events/<first>.jsonl|.idx     the event log, in segments, with offset indexes
    <root>/events/checkpoint.json        every projection reflects the log up to here
    <root>/workers/<enc>/worker.json     worker record (name, resolved profile, creation)
    <root>/workers/<enc>/state.json      status, active turn, queue, counters (checkpoint)
    <root>/workers/<enc>/overview.json   overview/usage projection (checkpoint)
    <root>/workers/<enc>/transcript.jsonl|.idx   transcript projection, with offset index
    <root>/workers/<enc>/events.idx      positions of the Worker's events in the log
    <root>/quarantine/                   bad records kept aside, with file, line and reason

The event log is the write-ahead log and the source of truth: a command is acknowledged once
its events are written (and, per the fsync mode, synced). Transcript, state and overview are
projections of the log, written as events arrive and checkpointed atomically; opening the
store replays only the events after the last checkpoint, so open cost grows with the number
of Workers, not of events.

Fsync modes: ``always`` syncs the log on every commit; ``batch`` (default) is a group commit
that completes before the ack (concurrent commits share one fsync); ``never`` writes to the OS
before the ack but does not fsync (survives a killed process, not an OS crash).
"""

from __future__ import annotations

import bisect
import fcntl
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

try:
    import orjson
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("fs-store") from exc

import anyio
import anyio.lowlevel

from ..errors import InvalidInput, RuntimeUnavailable, StoreCorrupt
from ..events import Event, new_incarnation, now_rfc3339
from ..execution import ContextMessage
from ..models import Limits
from . import RecoveredWorker, StoreDiagnostic, StoreOpened, TranscriptEntry, WorkerRecord
from ._fsfiles import (
    IndexedLog,
    StoreIOError,
    atomic_write_json,
    decode_id,
    encode_id,
    io_errors,
    read_json,
)
from ._projection import TurnMarker, WorkerState, rebuild_history, transcript_entry

__all__ = ["FsRuntimeStore", "FsyncMode"]

FsyncMode = Literal["always", "batch", "never"]
SCHEMA_VERSION = 1
#: After an unclean shutdown, positions skip this far ahead, so that no cursor a client saw
#: for an event that was lost with the OS can ever name a different event.
UNCLEAN_POSITION_GAP = 1 << 20


def _event_line(event: Event) -> bytes:
    line: bytes = (
        orjson.dumps(
            {
                "p": event.position,
                "c": event.cursor,
                "k": event.kind,
                "w": event.worker_id,
                "t": event.turn_id,
                "a": event.at,
                "d": event.data,
            }
        )
        + b"\n"
    )
    return line


def _event_of(raw: dict[str, Any], runtime_id: str) -> Event:
    return Event(raw["p"], raw["c"], raw["k"], runtime_id, raw["w"], raw["t"], raw["a"], raw["d"])


def _entry_line(entry: TranscriptEntry) -> bytes:
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


def _entry_of(raw: dict[str, Any]) -> TranscriptEntry:
    return TranscriptEntry(
        raw["s"], raw["t"], raw["r"], raw["c"], raw["u"], raw["a"], bool(raw.get("p", False))
    )


class _WorkerFiles:
    """The store's side of one Worker: its projection state and (made on first use) its
    projection files."""

    __slots__ = (
        "_events",
        "_transcript",
        "checkpointed",
        "dir",
        "pending_positions",
        "pending_transcript",
        "state",
    )

    def __init__(self, directory: Path, state: WorkerState) -> None:
        self.dir = directory
        self.state = state
        self.pending_transcript: list[tuple[bytes, bool]] = []
        self.pending_positions: list[tuple[bytes, bool]] = []
        self.checkpointed = 0
        self._transcript: IndexedLog | None = None
        self._events: IndexedLog | None = None

    @property
    def transcript(self) -> IndexedLog:
        if self._transcript is None:
            self._transcript = IndexedLog(
                self.dir / "transcript.jsonl", self.dir / "transcript.idx"
            )
        return self._transcript

    @property
    def events(self) -> IndexedLog:
        if self._events is None:
            self._events = IndexedLog(self.dir / "events.jsonl", self.dir / "events.idx")
        return self._events


class _Segment:
    __slots__ = ("first", "log")

    def __init__(self, events_dir: Path, first: int) -> None:
        self.first = first
        name = f"{first:020d}"
        self.log = IndexedLog(events_dir / f"{name}.jsonl", events_dir / f"{name}.idx")


class FsRuntimeStore:
    """A :class:`~worker_runtime.store.RuntimeStore` on the local filesystem."""

    kind = "fs"
    durable = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: FsyncMode = "batch",
        segment_max_events: int = 100_000,
        max_segments: int | None = None,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise InvalidInput("fsync must be one of always, batch, never")
        if segment_max_events < 1:
            raise InvalidInput("segment_max_events must be >= 1")
        if max_segments is not None and max_segments < 1:
            raise InvalidInput("max_segments must be >= 1")
        self.root = Path(root)
        self.fsync_mode: FsyncMode = fsync
        self._segment_max = segment_max_events
        self._max_segments = max_segments
        self._checkpoint_interval = checkpoint_interval_s
        self._events_dir = self.root / "events"
        self._workers_dir = self.root / "workers"
        self._quarantine_dir = self.root / "quarantine"
        self._lock_fd: int | None = None
        self._runtime_id = ""
        self._incarnation = ""
        self._segments: list[_Segment] = []
        self._pending_events: list[tuple[int, bytes]] = []
        self._pending_records: list[tuple[Path, Any]] = []
        self._workers: dict[str, _WorkerFiles] = {}
        self._dirty: set[str] = set()
        self._appended = 0  # newest position handed to the store
        self._written = 0  # newest position written to the OS
        self._durable = 0  # newest position synced per the fsync mode
        self._oldest = 1  # oldest position still on disk
        self._syncing: anyio.Event | None = None
        self._failed: StoreIOError | None = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint_position = 0
        self._pass_queue: list[str] | None = None
        self._pass_position = 0
        self._diagnostics: list[StoreDiagnostic] = []
        self._quarantined = 0
        self._record: dict[str, Any] = {}

    # -- opening -----------------------------------------------------------------------------

    async def open(self, *, runtime_id: str, limits: Limits) -> StoreOpened:
        return await anyio.to_thread.run_sync(self._open, runtime_id, limits)

    def _open(self, runtime_id: str, limits: Limits) -> StoreOpened:
        with io_errors("opening the store"):
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock()
        try:
            with io_errors("opening the store"):
                clean = self._open_record(runtime_id, limits)
                for d in (self._events_dir, self._workers_dir):
                    d.mkdir(exist_ok=True)
                head = self._open_segments()
                checkpoint = self._checkpoint_position = self._read_checkpoint()
                recovered = self._open_workers(clean=clean)
                self._replay(checkpoint, head)
                if not clean and head > 0:
                    head += UNCLEAN_POSITION_GAP
                    self._roll_segment(head + 1)  # positions stay contiguous per segment
                    self._diagnose(
                        "warning",
                        "store.unclean_shutdown",
                        "the previous process did not shut down cleanly; its unacknowledged "
                        "output after the last durable event is gone",
                    )
                self._appended = self._written = self._durable = head
                self._mark_running(clean=False)
        except BaseException:
            self._unlock()
            raise
        workers = [
            RecoveredWorker(record=record, state=self._workers[record.worker_id].state)
            for record in recovered
        ]
        return StoreOpened(
            runtime_id=self._runtime_id,
            incarnation=self._incarnation,
            head=head,
            workers=workers,
            diagnostics=self.take_diagnostics(),
        )

    def _lock(self) -> None:
        fd = os.open(self.root / "runtime.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeUnavailable(
                "the store is locked by another process (runtime.lock); one Runtime process "
                "per store root",
                details={"reason": "store_locked", "lock": "runtime.lock"},
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open_record(self, runtime_id: str, limits: Limits) -> bool:
        path = self.root / "runtime.json"
        if not path.exists():
            if any(self._events_dir.glob("*.jsonl")) or any(self._workers_dir.glob("*")):
                raise StoreCorrupt("runtime.json is missing from a store that holds data")
            self._runtime_id = runtime_id
            self._incarnation = new_incarnation()
            self._record = {
                "schema_version": SCHEMA_VERSION,
                "runtime_id": runtime_id,
                "incarnation": self._incarnation,
                "created_at": now_rfc3339(),
                "limits": limits.model_dump(mode="json"),
                "fsync": self.fsync_mode,
                "segment_max_events": self._segment_max,
                "max_segments": self._max_segments,
                "clean_shutdown": True,
            }
            return True
        try:
            record = read_json(path)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            if record.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(f"unknown schema_version {record.get('schema_version')!r}")
            stored_id, incarnation = record["runtime_id"], record["incarnation"]
            if not isinstance(stored_id, str) or not isinstance(incarnation, str):
                raise ValueError("runtime_id and incarnation must be strings")
        except (ValueError, KeyError) as exc:
            raise StoreCorrupt(f"runtime.json is corrupt: {exc}") from None
        if stored_id != runtime_id:
            raise InvalidInput(
                f"this store root belongs to runtime '{stored_id}', not '{runtime_id}'",
                details={"stored_runtime_id": stored_id, "runtime_id": runtime_id},
            )
        self._runtime_id = stored_id
        self._incarnation = incarnation
        self._record = record
        return bool(record.get("clean_shutdown", False))

    def _mark_running(self, *, clean: bool) -> None:
        self._record["clean_shutdown"] = clean
        self._record["fsync"] = self.fsync_mode
        atomic_write_json(self.root / "runtime.json", self._record, durable=True)

    # -- the event log -------------------------------------------------------------------------

    def _open_segments(self) -> int:
        firsts = sorted(int(p.stem) for p in self._events_dir.glob("*.jsonl") if p.stem.isdigit())
        self._segments = [_Segment(self._events_dir, first) for first in firsts]
        if not self._segments:
            self._segments.append(_Segment(self._events_dir, 1))
            self._write_active_pointer()
            self._oldest = 1
            return 0
        self._oldest = self._segments[0].first
        active = self._segments[-1]
        head = self._recover_segment(active)
        self._write_active_pointer()
        return head

    def _write_active_pointer(self) -> None:
        atomic_write_json(
            self._events_dir / "active.json",
            {"segment": f"{self._segments[-1].first:020d}.jsonl"},
            durable=self.fsync_mode != "never",
        )

    def _recover_segment(self, segment: _Segment) -> int:
        """Scan the active segment: truncate a torn tail, quarantine bad records (the records
        after them still load), rebuild its index. Returns the position of its last event."""
        raw = segment.log.data_path.read_bytes() if segment.log.data_path.exists() else b""
        lines = list(segment.log.scan())
        good: list[tuple[bytes, bool]] = []
        expected = segment.first
        torn = quarantined = False
        for i, (offset, line) in enumerate(lines):
            try:
                record = orjson.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("p"), int):
                    raise ValueError("not an event record")
                position = record["p"]
                if position < expected:
                    raise ValueError(f"position {position} is out of order")
            except (orjson.JSONDecodeError, ValueError) as exc:
                if i == len(lines) - 1:
                    torn = True  # the last record was being written when the process died
                    break
                self._quarantine(segment.log.data_path, offset, line, str(exc))
                quarantined = True
                continue
            while expected < position:  # an event replaced by garbage: keep its slot empty
                good.append((b'{"quarantined":true}\n', True))
                expected += 1
            good.append((line + b"\n", True))
            expected += 1
        if not torn and raw and not raw.endswith(b"\n"):
            torn = True
            good.pop()
            expected -= 1
        if torn:
            self._diagnose(
                "warning",
                "store.torn_tail_truncated",
                f"a torn last record of the event log ({segment.log.data_path.name}) was truncated",
            )
        if torn or quarantined or segment.log.count != len(good):
            segment.log.rewrite(good, durable=True)
        return expected - 1

    def _quarantine(self, path: Path, offset: int, line: bytes, reason: str) -> None:
        self._quarantine_dir.mkdir(exist_ok=True)
        self._quarantined += 1
        relative = path.relative_to(self.root).as_posix()
        record = {
            "file": relative,
            "offset": offset,
            "reason": reason,
            "content": line.decode("utf-8", errors="replace")[:4096],
            "at": now_rfc3339(),
        }
        name = f"{int(time.time() * 1000)}-{self._quarantined}.json"
        atomic_write_json(self._quarantine_dir / name, record, durable=True)
        self._diagnose(
            "warning",
            "store.record_quarantined",
            f"a bad record in {relative} (byte {offset}) was quarantined: {reason}",
        )

    def _diagnose(
        self,
        severity: Literal["info", "warning", "error"],
        code: str,
        message: str,
        worker_id: str | None = None,
    ) -> None:
        self._diagnostics.append(StoreDiagnostic(severity, code, message, worker_id))

    def _read_checkpoint(self) -> int:
        path = self._events_dir / "checkpoint.json"
        try:
            raw = read_json(path)
            return int(raw["position"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError):
            self._diagnose(
                "warning",
                "store.checkpoint_ignored",
                "events/checkpoint.json is corrupt; the whole log is replayed",
            )
            return 0

    def read_events(self, after: int, limit: int, worker_id: str | None) -> list[Event] | None:
        """Up to ``limit`` events after ``after`` from disk (one Worker's, if given), or
        ``None`` when the log no longer holds the next one (pruned by retention)."""
        if self._failed is not None:
            return None
        self._flush_projections((worker_id,) if worker_id is not None else ())
        with io_errors("reading the event log"):
            if after + 1 < self._oldest:
                return None
            if worker_id is None:
                return self._read_range(after + 1, self._written, limit)
            files = self._workers.get(worker_id)
            if files is None:
                return []
            positions = self._worker_positions_after(files, after, limit)
            if positions and positions[0] < self._oldest:
                return None
            out: list[Event] = []
            for position in positions:
                out.extend(self._read_range(position, position))
            return out

    def _worker_positions_after(self, files: _WorkerFiles, after: int, limit: int) -> list[int]:
        count = files.events.count
        lo, hi = 0, count
        while lo < hi:  # binary search on the index file: O(log n) small reads
            mid = (lo + hi) // 2
            if self._position_at(files, mid) <= after:
                lo = mid + 1
            else:
                hi = mid
        lines = files.events.read_records(lo, limit)
        return [int(line) for line in lines[:limit]]

    @staticmethod
    def _position_at(files: _WorkerFiles, index: int) -> int:
        return int(files.events.read_records(index, 1)[0])

    def _read_range(self, start: int, end: int, limit: int | None = None) -> list[Event]:
        """Up to ``limit`` events from ``start`` to ``end`` (inclusive) that are on disk;
        positions that no segment holds (the gap after an unclean shutdown) are stepped over."""
        out: list[Event] = []
        if limit is not None:
            end = min(end, self._written)
        firsts = [s.first for s in self._segments]
        position = start
        while position <= end:
            index = bisect.bisect_right(firsts, position) - 1
            if index < 0:
                position = firsts[0] if firsts else end + 1
                continue
            segment = self._segments[index]
            local = position - segment.first
            available = segment.log.count - local
            if available <= 0:
                if index + 1 >= len(self._segments):
                    break
                position = self._segments[index + 1].first
                continue
            count = min(end - position + 1, available)
            if limit is not None:
                count = min(count, limit - len(out))
                if count <= 0:
                    break
            for line in segment.log.read_records(local, count):
                record = orjson.loads(line)
                if "p" in record:
                    out.append(_event_of(record, self._runtime_id))
            position += count
        return out

    # -- workers --------------------------------------------------------------------------------

    def _open_workers(self, *, clean: bool) -> list[WorkerRecord]:
        """Load every Worker's record and checkpoint. After an unclean shutdown, cut each
        Worker's projection files back to its checkpoint (replay appends the rest); after a
        clean one they are exactly at their checkpointed sizes already."""
        records: list[WorkerRecord] = []
        with os.scandir(self._workers_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        for name in names:
            worker_id = decode_id(name)
            if worker_id is None:
                continue
            entry = self._workers_dir / name
            try:
                raw = read_json(entry / "worker.json")
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
                files = _WorkerFiles(entry, WorkerState(worker_id=worker_id))
                sizes = {"transcript": [0, 0], "events": [0, 0]}
                try:
                    snapshot = read_json(entry / "state.json")
                except FileNotFoundError:
                    snapshot = None
                if snapshot is not None:
                    files.state = WorkerState.from_json(snapshot["state"])
                    files.checkpointed = files.state.position
                    sizes = snapshot["files"]
                if not clean or snapshot is None:
                    self._cut_to_checkpoint(worker_id, files, sizes)
            except FileNotFoundError:
                self._diagnose(
                    "warning",
                    "worker_snapshot_ignored",
                    "a Worker's worker.json is missing; the Worker was skipped",
                    worker_id,
                )
                continue
            except (ValueError, KeyError, TypeError) as exc:
                self._diagnose(
                    "warning",
                    "worker_snapshot_ignored",
                    f"a Worker's snapshot is corrupt ({exc}); the Worker was skipped",
                    worker_id,
                )
                continue
            self._workers[worker_id] = files
            records.append(record)
        records.sort(key=lambda r: r.ordinal)
        return records

    def _cut_to_checkpoint(
        self, worker_id: str, files: _WorkerFiles, sizes: dict[str, list[int]]
    ) -> None:
        cut = files.transcript.truncate(*sizes["transcript"]) and files.events.truncate(
            *sizes["events"]
        )
        if not cut:  # projection files lost what the checkpoint saw: rebuild them
            files.state = WorkerState(worker_id=worker_id)
            files.checkpointed = 0
            files.transcript.truncate(0, 0)
            files.events.truncate(0, 0)
            self._diagnose(
                "warning",
                "store.transcript_rebuilt",
                "a Worker's projection files were shorter than its checkpoint; they were "
                "rebuilt from the event log",
                worker_id,
            )

    def _replay(self, checkpoint: int, head: int) -> None:
        """Bring every projection up to the head of the log: each Worker's files were cut back
        to its checkpoint, so the events after it are projected exactly once."""
        start = checkpoint + 1
        for files in self._workers.values():
            if files.checkpointed == 0:  # no checkpoint yet: replay from its creation
                start = min(start, self._created_position(files))
        position = max(start, self._oldest)
        self._written = head
        while position <= head:
            batch = self._read_range(position, min(head, position + 4095))
            if not batch:
                break
            for event in batch:
                target = self._workers.get(event.worker_id or "")
                if target is not None:
                    self._project(target, event)
            position = batch[-1].position + 1

    @staticmethod
    def _created_position(files: _WorkerFiles) -> int:
        try:
            raw = read_json(files.dir / "worker.json")
            return max(1, int(raw.get("position", 1)))
        except (OSError, ValueError, TypeError):
            return 1

    def _rebuild_transcript(self, worker_id: str, files: _WorkerFiles) -> None:
        lines: list[tuple[bytes, bool]] = []
        positions: list[tuple[bytes, bool]] = []
        for event in self._worker_events_from_log(worker_id, files):
            positions.append((f"{event.position}\n".encode(), True))
            lines.extend(self._transcript_lines(event))
        files.pending_transcript.clear()
        files.pending_positions.clear()
        files.transcript.rewrite(lines, durable=True)
        files.events.rewrite(positions, durable=True)
        self._dirty.add(worker_id)
        self._diagnose(
            "warning",
            "store.transcript_rebuilt",
            "a Worker's transcript projection was rebuilt from the event log",
            worker_id,
        )

    def _worker_events_from_log(self, worker_id: str, files: _WorkerFiles) -> list[Event]:
        """Every event of one Worker still in the log, found by a scan from its creation."""
        out: list[Event] = []
        position = max(self._oldest, self._created_position(files))
        while position <= self._written:
            batch = self._read_range(position, min(self._written, position + 4095))
            if not batch:
                break
            out.extend(e for e in batch if e.worker_id == worker_id)
            position = batch[-1].position + 1
        return out

    def add_worker(self, record: WorkerRecord) -> None:
        """Create the Worker's directory now (so a read-only root fails the create before
        anything changes) and write its record with the next sync."""
        self._check_failed()
        directory = self._workers_dir / encode_id(record.worker_id)
        with io_errors("creating a Worker"):
            directory.mkdir(exist_ok=False)
        files = _WorkerFiles(directory, WorkerState(worker_id=record.worker_id))
        self._workers[record.worker_id] = files
        self._pending_records.append(
            (
                directory / "worker.json",
                {
                    "schema_version": SCHEMA_VERSION,
                    "worker_id": record.worker_id,
                    "name": record.name,
                    "profile": record.profile,
                    "created_at": record.created_at,
                    "ordinal": record.ordinal,
                    "position": record.position,
                },
            )
        )

    # -- writing ----------------------------------------------------------------------------------

    def append_events(self, events: Sequence[Event]) -> None:
        self._check_failed()
        for event in events:
            self._pending_events.append((event.position, _event_line(event)))
            self._appended = event.position
            files = self._workers.get(event.worker_id or "")
            if files is not None:
                self._project(files, event)

    def _project(self, files: _WorkerFiles, event: Event) -> None:
        state = files.state
        if event.position <= state.position:
            return
        state.apply(
            event.position, event.kind, event.turn_id, event.cursor or "", event.at, event.data
        )
        files.pending_positions.append((f"{event.position}\n".encode(), True))
        files.pending_transcript.extend(self._transcript_lines(event))
        self._dirty.add(state.worker_id)

    @staticmethod
    def _transcript_lines(event: Event) -> list[tuple[bytes, bool]]:
        if event.kind == "turn_started":
            return [(orjson.dumps({"m": event.turn_id}) + b"\n", False)]
        entry = transcript_entry(
            event.kind, event.turn_id, event.cursor or "", event.at, event.data
        )
        return [(_entry_line(entry), True)] if entry is not None else []

    def flush(self) -> None:
        """Write the log records appended so far to the OS (no fsync). Projection files are
        written at checkpoints and before they are read: the log can always rebuild them."""
        self._check_failed()
        if not (self._pending_events or self._pending_records):
            return
        try:
            self._flush_log()
        except OSError as exc:
            self._fail(exc)

    def _flush_log(self) -> None:
        for path, record in self._pending_records:
            atomic_write_json(path, record, durable=self.fsync_mode != "never")
        self._pending_records.clear()
        pending, self._pending_events = self._pending_events, []
        index = 0
        while index < len(pending):
            active = self._segments[-1]
            room = self._segment_max - active.log.count
            if room <= 0:
                self._roll_segment(pending[index][0])
                continue
            chunk = pending[index : index + room]
            active.log.append([(line, True) for _, line in chunk])
            index += len(chunk)
        if pending:
            self._written = pending[-1][0]

    def _flush_projections(self, worker_ids: Iterable[str]) -> None:
        """Write the pending projection lines of some Workers (after the log they derive from)."""
        self.flush()
        try:
            for worker_id in worker_ids:
                files = self._workers.get(worker_id)
                if files is None:
                    continue
                if files.pending_transcript:
                    files.transcript.append(files.pending_transcript)
                    files.pending_transcript = []
                if files.pending_positions:
                    files.events.append(files.pending_positions)
                    files.pending_positions = []
                files.transcript.close()  # bounded descriptors, however many Workers
                files.events.close()
        except OSError as exc:
            self._fail(exc)

    def _roll_segment(self, first: int) -> None:
        old = self._segments[-1]
        old.log.fsync()
        old.log.close()
        self._segments.append(_Segment(self._events_dir, first))
        self._write_active_pointer()
        if self._max_segments is not None:
            # Never prune what the last checkpoint has not covered: replay after a crash
            # needs those events.
            while (
                len(self._segments) > self._max_segments
                and self._segments[1].first - 1 <= self._checkpoint_position
            ):
                dropped = self._segments.pop(0)
                dropped.log.close()
                dropped.log.data_path.unlink(missing_ok=True)
                dropped.log.index_path.unlink(missing_ok=True)
            self._oldest = self._segments[0].first

    async def sync(self) -> None:
        """Make every appended event durable per the fsync mode (a group commit in ``batch``:
        concurrent callers share one fsync)."""
        target = self._appended
        while self._durable < target:
            self._check_failed()
            if self._syncing is not None:
                await self._syncing.wait()
                continue
            done = self._syncing = anyio.Event()
            try:
                if self.fsync_mode == "batch":
                    # Let every task that is ready run first, so the writers woken by the last
                    # round append before this one starts: one fsync then covers them all.
                    await anyio.lowlevel.checkpoint()
                upto = self._appended
                self.flush()
                if self.fsync_mode == "batch":
                    await anyio.to_thread.run_sync(self._fsync_log)
                elif self.fsync_mode == "always":
                    self._fsync_log()
                self._durable = max(self._durable, upto)
            except OSError as exc:
                self._fail(exc)
            finally:
                self._syncing = None
                done.set()
        self._checkpoint_step()

    def _fsync_log(self) -> None:
        # The data file only: the active segment's index is rebuilt from it on open.
        self._segments[-1].log.fsync_data()

    def _checkpoint_step(self) -> None:
        """Advance the checkpoint by a bounded slice of Workers, so no commit stalls on a long
        checkpoint. A pass snapshots every Worker that was dirty when it began; when it ends,
        every projection reflects the log up to the position the pass began at."""
        if self._pass_queue is None:
            if time.monotonic() - self._last_checkpoint < self._checkpoint_interval:
                return
            if not self._dirty:
                self._last_checkpoint = time.monotonic()
                return
            self.flush()
            self._pass_queue = sorted(self._dirty, reverse=True)
            self._pass_position = self._written
            self._dirty.clear()
        for _ in range(min(self.CHECKPOINT_SLICE, len(self._pass_queue))):
            self._checkpoint_worker(self._pass_queue.pop())
        if not self._pass_queue:
            self._finish_pass()

    #: Workers snapshotted per commit while a checkpoint pass runs.
    CHECKPOINT_SLICE = 16

    def checkpoint(self) -> None:
        """Snapshot every changed Worker now and record the checkpoint position."""
        self._check_failed()
        self.flush()
        queue = set(self._pass_queue or ()) | self._dirty
        self._pass_queue = None
        self._pass_position = self._written
        self._dirty.clear()
        for worker_id in sorted(queue):
            self._checkpoint_worker(worker_id)
        self._finish_pass()

    def _checkpoint_worker(self, worker_id: str) -> None:
        """Write one Worker's projection lines, fsync them, then its state and overview
        snapshots atomically (the snapshot records the projection files' sizes)."""
        files = self._workers.get(worker_id)
        if files is None:
            return
        durable = self.fsync_mode != "never"
        try:
            for log_, pending in (
                (files.transcript, files.pending_transcript),
                (files.events, files.pending_positions),
            ):
                if pending:
                    log_.append(pending)
                    pending.clear()
                if durable:
                    log_.fsync()
            snapshot = {
                "schema_version": SCHEMA_VERSION,
                "state": files.state.to_json(),
                "files": {
                    "transcript": list(files.transcript.sizes()),
                    "events": list(files.events.sizes()),
                },
            }
            files.transcript.close()
            files.events.close()
            atomic_write_json(files.dir / "state.json", snapshot, durable=durable)
            atomic_write_json(files.dir / "overview.json", _overview(files.state), durable=durable)
        except OSError as exc:
            self._fail(exc)
        files.checkpointed = files.state.position

    def _finish_pass(self) -> None:
        self._pass_queue = None
        try:
            atomic_write_json(
                self._events_dir / "checkpoint.json",
                {"position": self._pass_position},
                durable=self.fsync_mode != "never",
            )
        except OSError as exc:
            self._fail(exc)
        self._checkpoint_position = self._pass_position
        self._last_checkpoint = time.monotonic()

    def _fail(self, exc: OSError) -> None:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        self._failed = StoreIOError(
            f"the store failed to write: {reason}; the Runtime accepts no more commands",
            details={"reason": "store_failed", "errno": exc.errno},
        )
        raise self._failed from None

    def _check_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    # -- reading ----------------------------------------------------------------------------------

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        files = self._workers.get(worker_id)
        if files is None:
            return []
        self._flush_projections((worker_id,))
        try:
            with io_errors("reading a transcript"):
                lines = files.transcript.read_records(start, limit)
        except StoreIOError:
            return await self._repair_and_read(worker_id, files, start, limit)
        entries: list[TranscriptEntry] = []
        for line in lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                return await self._repair_and_read(worker_id, files, start, limit)
            if "m" in record:
                continue
            if record.get("s") != start + len(entries) + 1:
                return await self._repair_and_read(worker_id, files, start, limit)
            entries.append(_entry_of(record))
        if len(entries) < min(limit, files.state.transcript_len - start):
            return await self._repair_and_read(worker_id, files, start, limit)  # cut short
        return entries[:limit]

    async def _repair_and_read(
        self, worker_id: str, files: _WorkerFiles, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        with io_errors("repairing a transcript"):
            bad = files.transcript.data_path
            for offset, line in files.transcript.scan():
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    self._quarantine(bad, offset, line, f"not valid JSON ({exc.msg})")
            self._rebuild_transcript(worker_id, files)
            lines = files.transcript.read_records(start, limit)
        return [_entry_of(r) for r in map(orjson.loads, lines) if "m" not in r][:limit]

    def load_history(self, worker_id: str) -> list[ContextMessage]:
        """The conversation of a recovered Worker, in model order."""
        files = self._workers.get(worker_id)
        if files is None:
            return []
        self._flush_projections((worker_id,))
        if files.transcript.count < files.state.transcript_len:
            with io_errors("repairing a transcript"):
                self._rebuild_transcript(worker_id, files)
        with io_errors("reading a transcript"):
            items: list[TranscriptEntry | TurnMarker] = []
            for _, line in files.transcript.scan():
                record = orjson.loads(line)
                items.append(TurnMarker(record["m"]) if "m" in record else _entry_of(record))
        return rebuild_history(items)

    def take_diagnostics(self) -> list[StoreDiagnostic]:
        """Diagnostics recorded since the last call (repairs made while serving reads)."""
        found, self._diagnostics = self._diagnostics, []
        return found

    @property
    def oldest_position(self) -> int:
        return self._oldest

    async def close(self) -> None:
        if self._lock_fd is None:
            return
        try:
            if self._failed is None:
                await self.sync()
                self.checkpoint()
                for segment in self._segments:
                    segment.log.close()
                with io_errors("closing the store"):
                    self._mark_running(clean=True)
        finally:
            self._unlock()


def _overview(state: WorkerState) -> dict[str, Any]:
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
