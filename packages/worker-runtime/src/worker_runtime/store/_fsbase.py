"""The filesystem store's files and its opening and recovery (private to ``store.fs``)."""

from __future__ import annotations

import bisect
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NoReturn

import orjson  # only imported through store.fs, which guards the extra

from ..errors import InvalidInput, RuntimeUnavailable, StoreCorrupt
from ..events import Event, new_incarnation, now_rfc3339
from ..models import Limits
from . import StoreDiagnostic, TranscriptEntry, WorkerRecord
from ._failpoints import Failpoints
from ._fscatalog import Catalog, read_catalog
from ._fsfiles import (
    NOFOLLOW,
    IndexedLog,
    StoreIOError,
    atomic_write_json,
    decode_id,
    open_file,
    read_json,
)
from ._projection import WorkerState, transcript_entry

__all__ = ["FsStoreBase"]

FsyncMode = Literal["always", "batch", "never"]
SCHEMA_VERSION = 1
#: After an unclean shutdown, positions skip this far ahead, so that no cursor a client saw
#: for an event that was lost with the OS can ever name a different event.
UNCLEAN_POSITION_GAP = 1 << 20
#: What fills the slot of an event that a repair found missing or unreadable.
PLACEHOLDER = {"quarantined": True}


def event_line(event: Event) -> bytes:
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


def event_of(raw: dict[str, Any], runtime_id: str) -> Event:
    return Event(raw["p"], raw["c"], raw["k"], runtime_id, raw["w"], raw["t"], raw["a"], raw["d"])


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


class Segment:
    __slots__ = ("first", "log")

    def __init__(self, events_dir: Path, first: int, mode: int) -> None:
        self.first = first
        name = f"{first:020d}"
        self.log = IndexedLog(events_dir / f"{name}.jsonl", events_dir / f"{name}.idx", mode)


class FsStoreBase:
    """Opening, recovery and the log's segments; :class:`~worker_runtime.store.fs.FsRuntimeStore`
    adds writing, group commit, checkpoints and reads. Attributes are set by its constructor."""

    root: Path
    fsync_mode: FsyncMode
    _segment_max: int
    _max_segments: int | None
    _events_dir: Path
    _workers_dir: Path
    _quarantine_dir: Path
    _lock_fd: int | None
    _file_mode: int
    _dir_mode: int
    _runtime_id: str
    _incarnation: str
    _segments: list[Segment]
    _workers: dict[str, WorkerFiles]
    _dirty: set[str]
    _written: int
    _oldest: int
    _failed: StoreIOError | None
    _checkpoint_position: int
    _diagnostics: list[StoreDiagnostic]
    _quarantined: int
    _record: dict[str, Any]
    _pending_events: list[tuple[int, bytes]]
    _key_capacity: int
    _fp: Failpoints
    _catalog: Catalog
    _catalog_path: Path
    _catalog_rebuild: bool

    def _check_root(self) -> None:
        """Refuse a root another user owns or others may write to, and planted symlinks."""
        info = os.lstat(self.root)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            self._unsafe("the store root is not a directory (a symlink is not accepted)")
        if info.st_uid != os.geteuid():
            self._unsafe("the store root is owned by another user")
        if info.st_mode & 0o022:
            self._unsafe("the store root is writable by its group or by everyone; chmod 700 it")
        for name in ("events", "workers", "quarantine", "runtime.json", "runtime.lock"):
            try:
                entry = os.lstat(self.root / name)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(entry.st_mode):
                self._unsafe(f"{name} in the store root is a symlink; it is not followed")

    @staticmethod
    def _unsafe(why: str) -> NoReturn:
        raise RuntimeUnavailable(
            f"refusing to open the store: {why}", details={"reason": "store_unsafe"}
        )

    def _lock(self) -> None:
        """Lock the root directory itself (it cannot be unlinked while it is the root) and
        keep the pid in runtime.lock for people and readers; a second writer is refused even
        when runtime.lock was deleted under the live one."""
        self._check_root()
        dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dir_fd)
            raise RuntimeUnavailable(
                "the store is locked by another process (runtime.lock); one Runtime process "
                "per store root",
                details={"reason": "store_locked", "lock": "runtime.lock"},
            ) from None
        try:
            fd = open_file(self.root / "runtime.lock", os.O_RDWR | os.O_CREAT, self._file_mode)
        except BaseException:
            os.close(dir_fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        self._lock_fd = dir_fd

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
            version = record.get("schema_version")
            if version != SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"this store root was written by another version of yoi (schema_version "
                    f"{str(version)[:20]}); this version reads schema_version {SCHEMA_VERSION}",
                    details={"reason": "foreign_version", "schema_version": str(version)[:20]},
                )
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

    def _mark_running(self, *, clean: bool, head: int) -> None:
        self._record["clean_shutdown"] = clean
        self._record["head"] = head  # no later open may hand out a position at or below it
        self._record["fsync"] = self.fsync_mode
        atomic_write_json(
            self.root / "runtime.json", self._record, durable=True, mode=self._file_mode
        )

    def _open_segments(self, checkpoint: int) -> int:
        firsts = sorted(int(p.stem) for p in self._events_dir.glob("*.jsonl") if p.stem.isdigit())
        self._segments = [Segment(self._events_dir, first, self._file_mode) for first in firsts]
        if not self._segments:
            self._segments.append(Segment(self._events_dir, 1, self._file_mode))
            self._write_active_pointer()
            self._oldest = 1
            return 0
        self._oldest = self._segments[0].first
        active = self._segments[-1]
        head = self._recover_segment(active, checkpoint)
        self._write_active_pointer()
        return head

    def _write_active_pointer(self) -> None:
        atomic_write_json(
            self._events_dir / "active.json",
            {"segment": f"{self._segments[-1].first:020d}.jsonl"},
            durable=self.fsync_mode != "never",
            mode=self._file_mode,
        )

    def _trusted_prefix(self, segment: Segment, checkpoint: int) -> tuple[int, int]:
        """``(records, bytes)`` of the active segment that the last checkpoint covered and
        that need no scan: its records up to the checkpoint's position, whose index entries
        were synced before checkpoint.json named it. They are trusted only if the index entry
        of the checkpoint's own record points at a line boundary where that record is, whole;
        otherwise ``(0, 0)``: the whole segment is scanned, as after a damaged index."""
        keep = checkpoint - segment.first + 1
        if keep <= 0:
            return 0, 0
        offsets = segment.log.offsets(keep - 1, 2)
        if not offsets:
            return 0, 0
        begin = offsets[0]
        probe = segment.log.read_span_raw(max(0, begin - 1), begin + (1 << 20))
        if begin > 0:
            if probe[:1] != b"\n":
                return 0, 0
            probe = probe[1:]
        end = probe.find(b"\n")
        if end < 0:
            return 0, 0
        try:
            record = orjson.loads(probe[:end])
        except orjson.JSONDecodeError:
            return 0, 0
        if not isinstance(record, dict) or record.get("p") != checkpoint:
            return 0, 0
        after = begin + end + 1
        if len(offsets) == 2 and offsets[1] != after:
            return 0, 0
        return keep, after

    def _recover_segment(self, segment: Segment, checkpoint: int) -> int:
        """Scan the active segment after what the last checkpoint covered: truncate a torn
        tail, quarantine bad records (the records after them still load), rebuild its index.
        Returns the position of its last event. The cost grows with the events after the
        checkpoint, not with the segment's length."""
        kept, begin = self._trusted_prefix(segment, checkpoint)
        # An index the checkpoint's record did not match is rebuilt whole, whatever its length.
        distrusted = kept == 0 and checkpoint >= segment.first
        raw = segment.log.read_from(begin)
        lines: list[tuple[int, bytes]] = []
        offset = begin
        for piece in raw.split(b"\n"):
            if piece:
                lines.append((offset, piece))
            offset += len(piece) + 1
        good: list[tuple[bytes, bool]] = []
        starts: list[int] = []  # the data offset of each good line, while none is rewritten
        expected = segment.first + kept
        torn = quarantined = explained = gap = False
        end = begin + len(raw)  # the data file's size once a torn tail is cut
        for i, (offset, line) in enumerate(lines):
            self._fp.hit("recovery.parse")
            try:
                record = orjson.loads(line)
                if record == PLACEHOLDER:  # a slot kept empty by an earlier repair
                    good.append((line + b"\n", True))
                    starts.append(offset)
                    expected += 1
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("p"), int):
                    raise ValueError("not an event record")
                position = record["p"]
                if position < expected:
                    raise ValueError(f"position {position} is out of order")
            except (orjson.JSONDecodeError, ValueError) as exc:
                if i == len(lines) - 1:
                    torn = True  # the last record was being written when the process died
                    end = offset
                    break
                self._quarantine(segment.log.data_path, offset, line, str(exc))
                quarantined = explained = True
                continue
            if expected < position and not explained:
                self._diagnose(
                    "error",
                    "store.log_gap",
                    f"the event log segment {segment.log.data_path.name} skips from position "
                    f"{expected - 1} to {position} with no bad record in between: those "
                    "events are missing; reads step over them",
                )
            explained = False
            if expected < position:
                gap = True
            while expected < position:  # an event replaced by garbage: keep its slot empty
                good.append((b'{"quarantined":true}\n', True))
                expected += 1
            good.append((line + b"\n", True))
            starts.append(offset)
            expected += 1
        if not torn and raw and not raw.endswith(b"\n"):
            torn = True
            good.pop()
            end = starts.pop()
            expected -= 1
        if torn:
            self._diagnose(
                "warning",
                "store.torn_tail_truncated",
                f"a torn last record of the event log ({segment.log.data_path.name}) was truncated",
            )
        if quarantined:
            self._fp.hit("recovery.quarantine")
        if quarantined or gap:
            # Records move: the segment is rewritten whole, atomically (its trusted prefix
            # as it is on disk).
            prefix = segment.log.read_span(0, begin)
            segment.log.rewrite([(line + b"\n", True) for line in prefix] + good, durable=True)
        elif torn or distrusted or segment.log.count != kept + len(good):
            segment.log.reindex_tail(end, kept, starts, durable=True)
        if torn:
            self._fp.hit("recovery.truncate")
        return expected - 1

    def _quarantine(self, path: Path, offset: int, line: bytes, reason: str) -> None:
        self._quarantine_dir.mkdir(mode=self._dir_mode, exist_ok=True)
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
        atomic_write_json(self._quarantine_dir / name, record, durable=True, mode=self._file_mode)
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

    def _check_log_length(self, head: int, checkpoint: int) -> int:
        """The head, or (when the log is shorter than the store's own records say: lost
        segments) a new incarnation whose positions start past every recorded one, with a
        store.log_lost diagnostic, so no earlier cursor can ever name a new event."""
        recorded = max(
            int(self._record.get("head", 0) or 0),
            checkpoint,
            max((f.checkpointed for f in self._workers.values()), default=0),
        )
        if head >= recorded:
            return head
        self._incarnation = self._record["incarnation"] = new_incarnation()
        self._diagnose(
            "error",
            "store.log_lost",
            f"the event log ends at position {head} but the store's records reach {recorded}: "
            "events were lost (missing segments); a new incarnation started, so cursors "
            "issued before it are unknown and must re-read the transcript",
        )
        return recorded

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

    def _read_range(self, start: int, end: int, limit: int | None = None) -> list[Event]:
        """Up to ``limit`` events from ``start`` to ``end`` (inclusive) that are on disk;
        positions that no segment holds (the gap after an unclean shutdown) are stepped over."""
        out: list[Event] = []
        if limit is not None:
            end = min(end, self._written)
        # A copy: a read in a worker thread must not see a roll or prune half-way.
        segments = self._segments.copy()
        firsts = [s.first for s in segments]
        position = start
        while position <= end:
            index = bisect.bisect_right(firsts, position) - 1
            if index < 0:
                position = firsts[0] if firsts else end + 1
                continue
            segment = segments[index]
            local = position - segment.first
            available = segment.log.count - local
            if available <= 0:
                if index + 1 >= len(segments):
                    break
                position = segments[index + 1].first
                continue
            count = min(end - position + 1, available)
            if limit is not None:
                count = min(count, limit - len(out))
                if count <= 0:
                    break
            lines = segment.log.read_records(local, count)
            if len(lines) != count:
                self._misaligned(segment, position, "records are missing from their slots")
            for offset, line in enumerate(lines):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self._misaligned(segment, position + offset, "a record is not JSON")
                if "p" not in record:
                    continue  # a slot whose record was quarantined
                if record["p"] != position + offset:
                    self._misaligned(segment, position + offset, f"it holds {record['p']!r}")
                out.append(event_of(record, self._runtime_id))
            position += count
        return out

    def _misaligned(self, segment: Segment, position: int, why: str) -> NoReturn:
        """A read found a record other than the one its slot must hold: a typed error and a
        diagnostic, never another event in its place."""
        name = segment.log.data_path.name
        self._diagnose(
            "error",
            "store.log_misaligned",
            f"the event log segment {name} does not hold position {position} where it must "
            f"({why}); the read was refused",
        )
        raise StoreCorrupt(
            "the event log is inconsistent at the requested position",
            details={"reason": "log_misaligned", "position": position},
        )

    def _open_workers(self, *, clean: bool, checkpoint: int) -> list[WorkerRecord]:
        """Load every Worker's record and checkpoint: from the catalog (one file), or for a
        Worker the catalog does not hold yet, from its own files. After an unclean shutdown
        each Worker's projection files are cut back to its checkpoint before replay touches
        them; after a clean one they are exactly at their checkpointed sizes already."""
        records: list[WorkerRecord] = []
        with os.scandir(self._workers_dir) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            )
        read = read_catalog(self._catalog_path, checkpoint)
        self._catalog = Catalog(
            self._catalog_path, read.lines, self._file_mode, size=read.size, live=read.live
        )
        catalog = read.entries
        if read.problem is not None:
            catalog = {}
            self._catalog_rebuild = True
            self._diagnose(
                "warning",
                "store.catalog_rebuilt",
                f"the catalog could not be trusted ({read.problem}); it is rebuilt from the "
                "Workers' own files and the event log",
            )
        on_disk: set[str] = set()
        created: list[WorkerFiles] = []  # Workers whose state is their worker_created event
        for name in names:
            worker_id = decode_id(name)
            if worker_id is None:
                continue
            on_disk.add(worker_id)
            known = catalog.get(worker_id)
            if known is not None:
                try:
                    record = record_of(known.record, worker_id)
                    files = WorkerFiles(
                        (self._workers_dir, name),
                        WorkerState.from_json(known.state),
                        record.position,
                        self._file_mode,
                    )
                except (ValueError, KeyError, TypeError):
                    pass  # this entry is unusable: the Worker's own files decide
                else:
                    files.checkpointed = files.state.position
                    files.record_json = known.record
                    files.catalog_line = known.line
                    if not clean:
                        files.cut_sizes = known.files
                    self._workers[worker_id] = files
                    records.append(record)
                    continue
            entry = self._workers_dir / name
            try:
                raw = read_json(entry / "worker.json")
                record = record_of(raw, worker_id)
                files = WorkerFiles(
                    entry, WorkerState(worker_id=worker_id), record.position, self._file_mode
                )
                files.record_json = raw
                self._dirty.add(worker_id)  # its catalog line is written by the next checkpoint
                sizes: dict[str, list[int]] | None = {"transcript": [0, 0], "events": [0, 0]}
                try:
                    snapshot = read_json(entry / "state.json")
                except FileNotFoundError:
                    snapshot = None
                if snapshot is not None:
                    files.state = WorkerState.from_json(snapshot["state"])
                    files.checkpointed = files.state.position
                    sizes = snapshot["files"]
                elif files.created <= checkpoint and self._no_projection(entry):
                    created.append(files)  # its files are empty: nothing to cut
                    sizes = None
                if sizes is not None and (not clean or snapshot is None):
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
        self._states_from_creation(created)
        for worker_id in sorted(catalog.keys() - on_disk):
            self._diagnose(
                "warning",
                "store.catalog_contradicts_log",
                "the catalog names a Worker whose files are gone; the Worker was skipped",
                worker_id,
            )
        records.sort(key=lambda r: r.ordinal)
        return records

    @staticmethod
    def _no_projection(entry: Path) -> bool:
        """Whether a Worker's directory holds no projection lines (only its record)."""
        for name in ("events.jsonl", "events.idx", "transcript.jsonl", "transcript.idx"):
            try:
                if os.lstat(entry / name).st_size:
                    return False
            except FileNotFoundError:
                continue
        return True

    def _states_from_creation(self, workers: list[WorkerFiles]) -> None:
        """Workers without state.json that the checkpoint covered, and with no projection
        lines, had no event but their creation then (any later one gives a Worker a
        state.json and a line of its own events file): each one's state is its
        worker_created event, read where its record says (nearby positions in one read),
        instead of a replay of the log from there. A Worker whose event is not found there
        (pruned, unexpected) is left to that replay."""
        wanted = {files.created: files for files in workers}
        positions = sorted(wanted)
        i = 0
        while i < len(positions):
            j = i
            while (
                j + 1 < len(positions)
                and positions[j + 1] - positions[j] <= 64
                and positions[j + 1] - positions[i] < 4096
            ):
                j += 1
            for event in self._read_range(positions[i], positions[j]):
                files = wanted.get(event.position)
                if (
                    files is None
                    or event.kind != "worker_created"
                    or event.worker_id != files.state.worker_id
                ):
                    continue
                files.state.apply(
                    event.position,
                    event.kind,
                    event.turn_id,
                    event.cursor or "",
                    event.at,
                    event.data,
                    keys=self._key_capacity,
                )
                files.checkpointed = files.state.position
            i = j + 1

    def _ensure_cut(self, files: WorkerFiles) -> None:
        """Cut a Worker's projection files back to its checkpoint, once, before they are
        touched after an unclean shutdown (files the checkpoint saw longer are rebuilt)."""
        sizes = files.cut_sizes
        if sizes is None:
            return
        files.cut_sizes = None
        if files.transcript.truncate(*sizes["transcript"]) and files.events.truncate(
            *sizes["events"]
        ):
            return
        self._rebuild_transcript(files.state.worker_id, files, upto=files.state.position)

    def _cut_to_checkpoint(
        self, worker_id: str, files: WorkerFiles, sizes: dict[str, list[int]]
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
                start = min(start, files.created)
        self._written = head
        for batch in self._scan_log(max(start, self._oldest), head):
            for event in batch:
                target = self._workers.get(event.worker_id or "")
                if target is not None:
                    self._project(target, event)

    def _rebuild_transcript(
        self, worker_id: str, files: WorkerFiles, upto: int | None = None
    ) -> None:
        files.cut_sizes = None
        lines: list[tuple[bytes, bool]] = []
        positions: list[tuple[bytes, bool]] = []
        for event in self._worker_events_from_log(worker_id, files):
            if upto is not None and event.position > upto:
                break
            if event.kind != "worker_created":
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

    def _worker_events_from_log(self, worker_id: str, files: WorkerFiles) -> list[Event]:
        """Every event of one Worker still in the log, found by a scan from its creation."""
        out: list[Event] = []
        for batch in self._scan_log(max(self._oldest, files.created), self._written):
            out.extend(e for e in batch if e.worker_id == worker_id)
        return out

    def _scan_log(self, start: int, end: int, batch: int = 4096) -> Iterator[list[Event]]:
        """Every event on disk from ``start`` to ``end``, in batches of at most ``batch``
        positions. Positions no segment holds (the gap each unclean restart leaves) are
        stepped over: an empty range is never mistaken for the end of the log."""
        position = start
        while position <= end:
            stop = min(end, position + batch - 1)
            events = self._read_range(position, stop)
            if events:
                yield events
                position = events[-1].position + 1
                continue
            holder = self._segment_holding(position)
            if holder is not None:  # quarantined slots only: the segment goes on
                position = stop + 1
                continue
            following = [s.first for s in self._segments if s.first > position]
            if not following:
                break
            position = following[0]

    def _segment_holding(self, position: int) -> Segment | None:
        firsts = [s.first for s in self._segments]
        index = bisect.bisect_right(firsts, position) - 1
        if index < 0:
            return None
        segment = self._segments[index]
        return segment if position < segment.first + segment.log.count else None

    def _project(self, files: WorkerFiles, event: Event) -> None:
        state = files.state
        if event.position <= state.position:
            return
        self._ensure_cut(files)
        state.apply(
            event.position,
            event.kind,
            event.turn_id,
            event.cursor or "",
            event.at,
            event.data,
            keys=self._key_capacity,
        )
        if event.kind != "worker_created":  # the record holds that position
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
        return [(entry_line(entry), True)] if entry is not None else []

    def _roll_segment(self, first: int) -> None:
        old = self._segments[-1]
        old.log.fsync()
        old.log.close()
        segment = Segment(self._events_dir, first, self._file_mode)
        segment.log.append([])  # on disk at once: its first position is part of the log
        self._segments.append(segment)
        self._write_active_pointer()
        self._fp.hit("segment.roll")
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
                self._fp.hit("prune")
                dropped.log.index_path.unlink(missing_ok=True)
            self._oldest = self._segments[0].first

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
