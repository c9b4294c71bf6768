"""The filesystem store (``fs-store`` extra): a Runtime that survives its process.

Layout (ids are encoded into path components, see ``_fsfiles.encode_id``)::

    <root>/runtime.json                  runtime record + config snapshot
    <root>/runtime.lock                  the live process's pid (the flock is on <root> itself)
    <root>/catalog.jsonl                 every Worker's record and checkpointed state
    <root>/events/active.json            the active-segment pointer
    <root>/events/<first>.jsonl|.idx     the event log, in segments, with offset indexes
    <root>/events/checkpoint.json        every projection reflects the log up to here
    <root>/workers/<enc>/worker.json     worker record (name, resolved profile, creation)
    <root>/workers/<enc>/state.json      status, active turn, queue, counters (checkpoint;
                                         like the files below, only once it has an event
                                         after its creation)
    <root>/workers/<enc>/overview.json   overview/usage projection (checkpoint)
    <root>/workers/<enc>/transcript.jsonl|.idx   transcript projection, with offset index
    <root>/workers/<enc>/events.jsonl|.idx   positions of the Worker's events in the log
    <root>/quarantine/                   bad records kept aside, with file, line and reason

The event log is the write-ahead log and the source of truth: a command is acknowledged once
its events are written (and, per the fsync mode, synced). Transcript, state and overview are
projections of the log, written at checkpoints (and before they are read) and snapshotted
atomically; opening the store replays only the events after the last checkpoint, so open cost
grows with the number of Workers, not of events.

Fsync modes: ``always`` syncs the log on every commit; ``batch`` (default) is a group commit
that completes before the ack (concurrent commits share one fsync); ``never`` writes to the OS
before the ack but does not fsync (survives a killed process, not an OS crash).
"""

from __future__ import annotations

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

from ..errors import InvalidInput
from ..events import Event
from ..execution import ContextMessage
from ..models import Limits
from . import (
    HistoryMark,
    RecoveredWorker,
    StoreDiagnostic,
    StoreOpened,
    TranscriptEntry,
    WorkerRecord,
)
from ._failpoints import Failpoints
from ._fsbase import (
    SCHEMA_VERSION,
    UNCLEAN_POSITION_GAP,
    FsStoreBase,
    FsyncMode,
    Segment,
    WorkerFiles,
    entry_of,
    event_line,
    overview_of,
)
from ._fscatalog import Catalog, entry_line
from ._fsfiles import (
    IndexedLog,
    StoreIOError,
    atomic_write_json,
    encode_id,
    io_errors,
)
from ._projection import TurnMarker, WorkerState, rebuild_history

__all__ = ["STORE_MODES", "FsRuntimeStore", "FsyncMode", "StoreMode"]

StoreMode = Literal["private", "group"]
#: The named permission sets of a store root (``yoi-runtime --store-mode``): ``(file mode,
#: directory mode)``. ``private`` (the default) is for the Runtime's user alone; ``group``
#: lets the directory's group read the store (a backup job, a read-only ``FsStoreReader``).
#: The process umask can only narrow them.
STORE_MODES: dict[str, tuple[int, int]] = {"private": (0o600, 0o700), "group": (0o640, 0o750)}


def check_modes(file_mode: int, dir_mode: int) -> None:
    """Refuse modes that let anyone but the owner write, or that lock the owner out."""
    for what, mode, needs in (("file_mode", file_mode, 0o600), ("dir_mode", dir_mode, 0o700)):
        if not isinstance(mode, int) or isinstance(mode, bool) or mode & ~0o777:
            raise InvalidInput(f"{what} must be a permission mode such as {oct(needs)}")
        if mode & 0o022:
            raise InvalidInput(
                f"{what} {oct(mode)} lets its group or everyone write to the store; "
                "only its owner may",
                details={"field": what},
            )
        if mode & needs != needs:
            raise InvalidInput(
                f"{what} {oct(mode)} must give its owner at least {oct(needs)}",
                details={"field": what},
            )
    if file_mode & 0o111:
        raise InvalidInput("file_mode must not make store files executable")


class _Staged:
    """One Worker's part of a checkpoint slice, taken on the loop, written off it."""

    __slots__ = ("appended", "dir", "line", "overview", "snapshot")

    def __init__(
        self,
        directory: Path,
        appended: list[IndexedLog],
        snapshot: dict[str, Any],
        overview: dict[str, Any] | None,
        line: bytes,
    ) -> None:
        self.dir = directory
        self.appended = appended  # projection files that got lines: fsynced before the snapshot
        self.snapshot = snapshot
        self.overview = overview  # None: the catalog line alone records the Worker
        self.line = line

    @property
    def writes(self) -> bool:
        """Whether any file of the Worker's own is written."""
        return bool(self.appended) or self.overview is not None


class FsRuntimeStore(FsStoreBase):
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
        file_mode: int = STORE_MODES["private"][0],
        dir_mode: int = STORE_MODES["private"][1],
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise InvalidInput("fsync must be one of always, batch, never")
        if segment_max_events < 1:
            raise InvalidInput("segment_max_events must be >= 1")
        if max_segments is not None and max_segments < 1:
            raise InvalidInput("max_segments must be >= 1")
        check_modes(file_mode, dir_mode)
        self.root = Path(root)
        self._file_mode = file_mode
        self._dir_mode = dir_mode
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
        self._segments: list[Segment] = []
        self._pending_events: list[tuple[int, bytes]] = []
        self._pending_records: list[tuple[Path, Any]] = []
        self._workers: dict[str, WorkerFiles] = {}
        self._dirty: set[str] = set()
        self._appended = 0  # newest position handed to the store
        self._written = 0  # newest position written to the OS
        self._durable = 0  # newest position synced per the fsync mode
        self._oldest = 1  # oldest position still on disk
        self._syncing: anyio.Event | None = None
        self._slice_done: anyio.Event | None = None  # set while a checkpoint slice is written
        self._defer_checkpoint = False
        self._failed: StoreIOError | None = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint_position = 0
        self._pass_queue: list[str] | None = None
        self._recovering = False
        self._pass_position = 0
        self._diagnostics: list[StoreDiagnostic] = []
        self._quarantined = 0
        self._record: dict[str, Any] = {}
        self._key_capacity = 1024  # idempotency keys kept per Worker (limits, at open)
        self._fp = Failpoints()  # armed at open from YOI_STORE_FAILPOINTS (tests only)
        self._catalog_path = self.root / "catalog.jsonl"
        self._catalog = Catalog(self._catalog_path, 0, file_mode)
        self._catalog_rebuild = False

    # -- opening -----------------------------------------------------------------------------

    async def open(self, *, runtime_id: str, limits: Limits) -> StoreOpened:
        return await anyio.to_thread.run_sync(self._open, runtime_id, limits)

    def _open(self, runtime_id: str, limits: Limits) -> StoreOpened:
        self._key_capacity = limits.max_idempotency_keys
        self._fp = Failpoints.from_env(hooks=self._fp)
        with io_errors("opening the store"):
            self.root.mkdir(mode=self._dir_mode, parents=True, exist_ok=True)
            self._lock()
        try:
            with io_errors("opening the store"):
                clean = self._open_record(runtime_id, limits)
                for d in (self._events_dir, self._workers_dir):
                    d.mkdir(mode=self._dir_mode, exist_ok=True)
                checkpoint = self._checkpoint_position = self._read_checkpoint()
                head = self._open_segments(checkpoint)
                recovered = self._open_workers(clean=clean, checkpoint=checkpoint)
                logged = head
                head = self._check_log_length(head, checkpoint)
                if head != logged:
                    clean = False  # start past the records, in a segment of its own
                self._replay(checkpoint, logged)
                self._fp.hit("recovery.replay")
                if self._dirty or self._catalog_rebuild:
                    # What replay rebuilt (and the catalog lines of Workers read from their
                    # own files) is written by the first checkpoint pass, right after the
                    # open and in slices, so serving does not wait for it.
                    self._recovering = True
                    self._last_checkpoint = 0.0
                    # The Runtime's own first commit (as it starts) runs no slice: the pass
                    # begins with the next one, once the Runtime serves.
                    self._defer_checkpoint = True
                elif self._catalog.needs_compaction(len(self._workers)):
                    self._compact_catalog()
                if not clean and head > 0:
                    head += UNCLEAN_POSITION_GAP
                    self._roll_segment(head + 1)  # positions stay contiguous per segment
                    self._fp.hit("recovery.roll")
                    self._diagnose(
                        "warning",
                        "store.unclean_shutdown",
                        "the previous process did not shut down cleanly; its unacknowledged "
                        "output after the last durable event is gone",
                    )
                self._appended = self._written = self._durable = head
                self._mark_running(clean=False, head=head)
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

    # -- the event log -------------------------------------------------------------------------

    def read_events(self, after: int, limit: int, worker_id: str | None) -> list[Event] | None:
        """Up to ``limit`` events after ``after`` from disk (one Worker's, if given), or
        ``None`` when the log no longer holds the next one (pruned by retention). Blocks on
        disk: async code uses :meth:`read_events_async`."""
        if not self._prepare_read(worker_id):
            return None
        return self._read_events(after, limit, worker_id, self._written)

    async def read_events_async(
        self, after: int, limit: int, worker_id: str | None
    ) -> list[Event] | None:
        """:meth:`read_events` with the disk reads in a worker thread: the pending lines are
        written on the loop first (the append path keeps its order), then the log's and the
        Worker's index files, which only grow on the loop's side below ``written``, are read
        off it."""
        if not self._prepare_read(worker_id):
            return None
        return await anyio.to_thread.run_sync(
            self._read_events, after, limit, worker_id, self._written
        )

    def _prepare_read(self, worker_id: str | None) -> bool:
        """Write what a read must see (on the loop: the append path's order); ``False`` when
        the store failed and reads nothing more."""
        if self._failed is not None:
            return False
        self._flush_projections((worker_id,) if worker_id is not None else ())
        return True

    def _read_events(
        self, after: int, limit: int, worker_id: str | None, written: int
    ) -> list[Event] | None:
        self._fp.hit("read.events")
        try:
            with io_errors("reading the event log"):
                return self._read_events_upto(after, limit, worker_id, written)
        except StoreIOError:
            if after + 1 < self._oldest:  # pruned while it was being read
                return None
            raise

    def _read_events_upto(
        self, after: int, limit: int, worker_id: str | None, written: int
    ) -> list[Event] | None:
        if after + 1 < self._oldest:
            return None
        if worker_id is None:
            return self._read_range(after + 1, written, limit)
        files = self._workers.get(worker_id)
        if files is None:
            return []
        positions = self._worker_positions_after(files, after, limit)
        if positions and positions[0] < self._oldest:
            return None
        out: list[Event] = []
        for position in positions:
            if position > written:
                break
            for event in self._read_range(position, position):
                if event.worker_id != worker_id:  # the Worker's index names another's event
                    self._misaligned(self._segments[-1], position, "another Worker's event")
                out.append(event)
        return out

    def _worker_positions_after(self, files: WorkerFiles, after: int, limit: int) -> list[int]:
        # The Worker's worker_created position is in its record, not in its index file.
        first = [files.created] if after < files.created and files.created >= self._oldest else []
        return first + self._indexed_positions_after(files, after, limit - len(first))

    def _indexed_positions_after(self, files: WorkerFiles, after: int, limit: int) -> list[int]:
        if limit <= 0:
            return []
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
    def _position_at(files: WorkerFiles, index: int) -> int:
        return int(files.events.read_records(index, 1)[0])

    # -- workers --------------------------------------------------------------------------------

    def add_worker(self, record: WorkerRecord) -> None:
        """Create the Worker's directory now (so a read-only root fails the create before
        anything changes) and write its record with the next sync."""
        self._check_failed()
        directory = self._workers_dir / encode_id(record.worker_id)
        with io_errors("creating a Worker"):
            directory.mkdir(mode=self._dir_mode, exist_ok=False)
        files = WorkerFiles(
            directory, WorkerState(worker_id=record.worker_id), record.position, self._file_mode
        )
        self._workers[record.worker_id] = files
        files.record_json = {
            "schema_version": SCHEMA_VERSION,
            "worker_id": record.worker_id,
            "name": record.name,
            "profile": record.profile,
            "created_at": record.created_at,
            "ordinal": record.ordinal,
            "position": record.position,
        }
        self._pending_records.append((directory / "worker.json", files.record_json))

    # -- writing ----------------------------------------------------------------------------------

    def append_events(self, events: Sequence[Event]) -> None:
        """Record events all-or-nothing: every one is encoded and checked to be the next
        position before any is taken, so a refused batch leaves the store as it was."""
        self._check_failed()
        lines: list[tuple[int, bytes]] = []
        expected = self._appended + 1
        for event in events:
            if event.position != expected:
                raise StoreIOError(
                    "the store was handed an event out of log order",
                    details={"reason": "store_order", "position": event.position},
                )
            try:
                lines.append((event.position, event_line(event)))
            except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
                raise StoreIOError(
                    "an event could not be encoded for the store; nothing was recorded",
                    details={"reason": "store_encode", "position": event.position},
                ) from None
            expected += 1
        self._pending_events.extend(lines)
        for event in events:
            self._appended = event.position
            files = self._workers.get(event.worker_id or "")
            if files is not None:
                self._project(files, event)

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
            atomic_write_json(
                path, record, durable=self.fsync_mode != "never", mode=self._file_mode
            )
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
            self._fp.hit("append.written")

    def _flush_projections(self, worker_ids: Iterable[str]) -> None:
        """Write the pending projection lines of some Workers (after the log they derive from)."""
        self.flush()
        try:
            for worker_id in worker_ids:
                files = self._workers.get(worker_id)
                if files is None:
                    continue
                self._ensure_cut(files)
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

    async def maintain(self) -> None:
        """Advance the checkpoint by one slice, if one is due (the Runtime calls it after a
        commit is published, so publication never waits for a checkpoint)."""
        self._check_failed()
        if self._defer_checkpoint:
            self._defer_checkpoint = False
            return
        await self._checkpoint_step()

    def _fsync_log(self) -> None:
        # The data file only: the active segment's index is rebuilt from it on open.
        self._segments[-1].log.fsync_data()

    async def _checkpoint_step(self) -> None:
        """Advance the checkpoint by a bounded slice of Workers, so no commit stalls on a long
        checkpoint. A pass snapshots every Worker that was dirty when it began; when it ends,
        every projection reflects the log up to the position the pass began at. A slice's new
        projection lines are appended on the loop (plain writes, in the order the loop appends
        everything); its fsyncs, snapshots and catalog lines are written in a worker thread,
        one slice at a time."""
        if self._slice_done is not None:
            return  # a slice is being written: a later commit goes on with the pass
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
        staged: list[_Staged] = []
        wrote = cheap = 0
        while self._pass_queue and wrote < self.CHECKPOINT_SLICE and cheap < 4096:
            job = self._stage(self._pass_queue.pop())
            if job is None:
                continue
            staged.append(job)
            if job.writes:
                wrote += 1
            else:
                cheap += 1  # a catalog line only: no file of its own changed
        finish = not self._pass_queue
        compact = self._catalog_lines() if finish and self._compaction_due() else None
        done = self._slice_done = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # a slice, once begun, is recorded
                await anyio.to_thread.run_sync(self._write_slice, staged, finish, compact)
        finally:
            self._slice_done = None
            done.set()
        if finish:
            self._passed(compact is not None)

    #: Workers snapshotted per commit while a checkpoint pass runs.
    CHECKPOINT_SLICE = 16

    def checkpoint(self) -> None:
        """Snapshot every changed Worker now and record the checkpoint position (blocking:
        for :meth:`close` and tools, never while a slice is being written)."""
        self._check_failed()
        staged, compact = self._stage_all()
        self._write_slice(staged, True, compact)
        self._passed(compact is not None)

    def _stage_all(self) -> tuple[list[_Staged], list[bytes] | None]:
        self.flush()
        queue = set(self._pass_queue or ()) | self._dirty
        self._pass_queue = None
        self._pass_position = self._written
        self._dirty.clear()
        staged = [job for job in map(self._stage, sorted(queue)) if job is not None]
        return staged, self._catalog_lines() if self._compaction_due() else None

    def _stage(self, worker_id: str) -> _Staged | None:
        """On the loop: append one Worker's pending projection lines (after the log they
        derive from) and take its snapshot, with the sizes of its files now; what must be
        fsynced and written atomically is left to :meth:`_write_slice`."""
        files = self._workers.get(worker_id)
        if files is None:
            return None
        appended: list[IndexedLog] = []
        try:
            self._ensure_cut(files)
            for log_, pending in (
                (files.transcript, files.pending_transcript),
                (files.events, files.pending_positions),
            ):
                if pending:
                    log_.append(pending)
                    pending.clear()
                    appended.append(log_)
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
        except OSError as exc:
            self._fail(exc)
        changed = bool(appended) or files.state.position != files.checkpointed
        # A Worker with no event but its creation needs no files but its record: the catalog
        # holds its state, and without the catalog its worker_created event alone rebuilds it.
        # Any later event gives it a state.json, so that a lost or distrusted catalog never
        # means replaying the log from its creation.
        own = changed and bool(
            files.state.transcript_len
            or files.state.status != "idle"
            or files.state.position > files.created
        )
        line = entry_line(worker_id, files.record_json, snapshot["state"], snapshot["files"])
        files.catalog_line = line
        files.checkpointed = files.state.position
        return _Staged(
            files.dir, appended, snapshot, overview_of(files.state) if own else None, line
        )

    def _write_slice(
        self, staged: list[_Staged], finish: bool, compact: list[bytes] | None
    ) -> None:
        """In a worker thread (or blocking, for :meth:`checkpoint`): fsync each staged
        Worker's projection files, then write its state and overview snapshots atomically and
        its catalog line; when the pass is done, the catalog's marker and checkpoint.json."""
        self._fp.hit("checkpoint.slice")
        durable = self.fsync_mode != "never"
        mode = self._file_mode
        try:
            for job in staged:
                if durable:
                    for log_ in job.appended:
                        log_.fsync_files()
                if job.overview is not None:
                    atomic_write_json(
                        job.dir / "state.json", job.snapshot, durable=durable, mode=mode
                    )
                    atomic_write_json(
                        job.dir / "overview.json", job.overview, durable=durable, mode=mode
                    )
                self._catalog.append(job.line)
                self._checkpointed_one()
            if finish:
                self._fp.hit("recovery.checkpoint" if self._recovering else "checkpoint.finish")
                if durable:
                    # The active segment's index up to the pass's position is trusted by the
                    # next open (it scans only what follows): it is synced before the
                    # checkpoint names that position. Rolled segments were synced at the roll.
                    self._segments[-1].log.fsync_files()
                self._catalog.mark(self._pass_position, durable=durable)
                atomic_write_json(
                    self._events_dir / "checkpoint.json",
                    {"position": self._pass_position},
                    durable=durable,
                    mode=mode,
                )
                if compact is not None:
                    self._catalog.rewrite(compact, self._pass_position, durable=durable)
        except OSError as exc:
            self._fail(exc)

    def _passed(self, compacted: bool) -> None:
        """A pass is on disk: record it (prunes may now drop what it covers)."""
        self._pass_queue = None
        self._checkpoint_position = self._pass_position
        self._last_checkpoint = time.monotonic()
        self._recovering = False
        if compacted:
            self._catalog_rebuild = False

    def _compaction_due(self) -> bool:
        return self._catalog_rebuild or self._catalog.needs_compaction(len(self._workers))

    def _catalog_lines(self) -> list[bytes]:
        return [f.catalog_line for f in self._workers.values() if f.catalog_line]

    def _checkpointed_one(self) -> None:
        self._fp.hit("recovery.checkpoint" if self._recovering else "checkpoint.worker")

    def _compact_catalog(self) -> None:
        """Rewrite the catalog with one line per Worker (its newest) and the checkpoint."""
        lines = [f.catalog_line for f in self._workers.values() if f.catalog_line]
        try:
            self._catalog.rewrite(
                lines, self._checkpoint_position, durable=self.fsync_mode != "never"
            )
        except OSError as exc:
            self._fail(exc)
        self._catalog_rebuild = False

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
                # The files only grow on the loop's side; reading their prefix in a worker
                # thread keeps disk reads off the event loop.
                lines = await anyio.to_thread.run_sync(files.transcript.read_records, start, limit)
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
            entries.append(entry_of(record))
        if len(entries) < min(limit, files.state.transcript_len - start):
            return await self._repair_and_read(worker_id, files, start, limit)  # cut short
        return entries[:limit]

    async def _repair_and_read(
        self, worker_id: str, files: WorkerFiles, start: int, limit: int
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
        return [entry_of(r) for r in map(orjson.loads, lines) if "m" not in r][:limit]

    def mark_history(self, worker_id: str) -> HistoryMark:
        """Where a recovered Worker's conversation on disk ends now. On the loop, and bounded:
        the Worker's pending transcript lines are written (the append path's order) and its
        transcript's size is taken (two ``stat`` calls). Only a transcript found shorter than
        its projection is rebuilt here, from the log: a repair, never the normal path."""
        files = self._workers.get(worker_id)
        if files is None:
            return HistoryMark(worker_id, 0, 0)
        self._flush_projections((worker_id,))
        with io_errors("reading a transcript"):
            if files.transcript.count < files.state.transcript_len:
                self._rebuild_transcript(worker_id, files)
            size, count = files.transcript.sizes()
        return HistoryMark(worker_id, size, count)

    async def read_history(
        self, mark: HistoryMark, max_tokens: int | None = None
    ) -> list[ContextMessage]:
        """The conversation up to ``mark`` in model order, read in a worker thread (the
        transcript only grows past the mark, so its prefix is stable). With ``max_tokens``
        (the profile's context budget) only the newest entries are read, from the mark back,
        until they hold at least twice that many estimated tokens: a superset of what any
        turn's context can keep, at a cost bounded by the budget."""
        if mark.count == 0:
            return []
        return await anyio.to_thread.run_sync(self._history_upto, mark, max_tokens)

    def load_history(self, worker_id: str, max_tokens: int | None = None) -> list[ContextMessage]:
        """:meth:`mark_history` and :meth:`read_history` in one blocking call (for tools and
        tests; never called on the Runtime's event loop)."""
        return self._history_upto(self.mark_history(worker_id), max_tokens)

    def _history_upto(self, mark: HistoryMark, max_tokens: int | None) -> list[ContextMessage]:
        self._fp.hit("read.history")
        files = self._workers.get(mark.worker_id)
        if files is None or mark.count == 0:
            return []
        with io_errors("reading a transcript"):
            if max_tokens is None:
                lines = files.transcript.read_span(0, mark.size)
            else:
                lines = self._tail_lines(files, mark, 2 * max_tokens + 64)
        items: list[TranscriptEntry | TurnMarker] = []
        for line in lines:
            record = orjson.loads(line)
            items.append(TurnMarker(record["m"]) if "m" in record else entry_of(record))
        return rebuild_history(items)

    @staticmethod
    def _tail_lines(files: WorkerFiles, mark: HistoryMark, tokens: int) -> list[bytes]:
        """The transcript's lines before ``mark``, whole records back from it, until the model
        messages among them hold more than ``tokens`` estimated tokens (or it is all read)."""
        end, stop = mark.count, mark.size
        chunks: list[list[bytes]] = []
        used = 0
        while end > 0 and used <= tokens:
            start = max(0, end - 256)
            begin = files.transcript.offsets(start, 1)[0] if start else 0
            chunk = files.transcript.read_span(begin, stop)
            chunks.append(chunk)
            for line in chunk:
                record = orjson.loads(line)
                if record.get("r") in ("user", "system", "assistant"):
                    used += (len(record.get("c", "")) + 3) // 4 + 4  # as estimate_tokens
            end, stop = start, begin
        return [line for chunk in reversed(chunks) for line in chunk]

    def take_diagnostics(self) -> list[StoreDiagnostic]:
        """Diagnostics recorded since the last call (repairs made while serving reads)."""
        found, self._diagnostics = self._diagnostics, []
        return found

    @property
    def oldest_position(self) -> int:
        return self._oldest

    @property
    def failpoints(self) -> Failpoints:
        """The store's fault-injection points (armed at open; a test's hooks, added before or
        after it, are kept)."""
        return self._fp

    async def close(self) -> None:
        if self._lock_fd is None:
            return
        try:
            if self._failed is None:
                await self.sync()
                while self._slice_done is not None:
                    await self._slice_done.wait()
                staged, compact = self._stage_all()
                await anyio.to_thread.run_sync(self._write_slice, staged, True, compact)
                self._passed(compact is not None)
                for segment in self._segments:
                    segment.log.close()
                self._catalog.close()
                with io_errors("closing the store"):
                    self._mark_running(clean=True, head=self._written)
        finally:
            self._unlock()
