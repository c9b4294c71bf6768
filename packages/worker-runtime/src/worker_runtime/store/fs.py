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

:class:`FsRuntimeStore` owns the parts and wires them, each a class of its own that is handed
what it shares: the root (``_fsroot.StoreRoot``: paths, modes, lock, ``runtime.json``,
diagnostics, quarantine, fail-stop), the segmented log (``_fslog.SegmentedLog``, its segments
and their recovery in ``_fssegment``), the projections (``_fsprojections.Projections``, each
Worker's files in ``_fsworkers``), the checkpoints and the catalog (``_fscheckpoint``,
``_fscatalog``) and the reads (``_fsreads.StoreReads``).

Fsync modes: ``always`` syncs the log on every commit; ``batch`` (default) is a group commit
that completes before the ack (concurrent commits share one fsync); ``never`` writes to the OS
before the ack but does not fsync (survives a killed process, not an OS crash).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

try:
    import orjson  # noqa: F401  (the extra's guard: every part below needs it)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("fs-store") from exc

import anyio

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
from ._fscheckpoint import Checkpoints
from ._fsfiles import io_errors
from ._fslog import SegmentedLog
from ._fsprojections import Projections
from ._fsreads import StoreReads
from ._fsroot import STORE_MODES, FsyncMode, StoreMode, StoreRoot, check_modes

__all__ = ["STORE_MODES", "FsRuntimeStore", "FsyncMode", "StoreMode"]

#: After an unclean shutdown, positions skip this far ahead, so that no cursor a client saw
#: for an event that was lost with the OS can ever name a different event.
UNCLEAN_POSITION_GAP = 1 << 20


class FsRuntimeStore:
    """A :class:`~worker_runtime.store.RuntimeStore` on the local filesystem."""

    kind = "fs"
    durable = True
    #: Workers snapshotted per commit while a checkpoint pass runs.
    CHECKPOINT_SLICE = Checkpoints.CHECKPOINT_SLICE

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
        self.fsync_mode: FsyncMode = fsync
        self._root = StoreRoot(self.root, fsync=fsync, file_mode=file_mode, dir_mode=dir_mode)
        self._log = SegmentedLog(
            self._root, segment_max=segment_max_events, max_segments=max_segments
        )
        self._projections = Projections(self._root, self._log)
        self._checkpoints = Checkpoints(
            self._root, self._log, self._projections, interval=checkpoint_interval_s
        )
        self._reads = StoreReads(self._root, self._log, self._projections)

    # -- opening -----------------------------------------------------------------------------

    async def open(self, *, runtime_id: str, limits: Limits) -> StoreOpened:
        return await anyio.to_thread.run_sync(self._open, runtime_id, limits)

    def _open(self, runtime_id: str, limits: Limits) -> StoreOpened:
        root, log, projections = self._root, self._log, self._projections
        projections.key_capacity = limits.max_idempotency_keys
        root.fp = Failpoints.from_env(hooks=root.fp)
        with io_errors("opening the store"):
            self.root.mkdir(mode=root.dir_mode, parents=True, exist_ok=True)
            root.lock()
        try:
            with io_errors("opening the store"):
                clean = root.open_record(
                    runtime_id, limits, segment_max=log.segment_max, max_segments=log.max_segments
                )
                for d in (root.events_dir, root.workers_dir):
                    d.mkdir(mode=root.dir_mode, exist_ok=True)
                checkpoint = log.checkpoint = root.read_checkpoint()
                head = log.open(checkpoint)
                catalog = self._checkpoints.open_catalog(checkpoint)
                recovered = projections.load(catalog, clean=clean, checkpoint=checkpoint)
                logged = head
                head = self._check_log_length(head, checkpoint)
                if head != logged:
                    clean = False  # start past the records, in a segment of its own
                log.written = logged
                projections.replay(checkpoint, logged)
                root.fp.hit("recovery.replay")
                self._checkpoints.opened()
                if not clean and head > 0:
                    head += UNCLEAN_POSITION_GAP
                    log.roll(head + 1)  # positions stay contiguous per segment
                    root.fp.hit("recovery.roll")
                    root.diagnose(
                        "warning",
                        "store.unclean_shutdown",
                        "the previous process did not shut down cleanly; its unacknowledged "
                        "output after the last durable event is gone",
                    )
                log.start_at(head)
                root.mark_running(clean=False, head=head)
        except BaseException:
            root.unlock()
            raise
        workers = [
            RecoveredWorker(record=record, state=projections.workers[record.worker_id].state)
            for record in recovered
        ]
        return StoreOpened(
            runtime_id=root.runtime_id,
            incarnation=root.incarnation,
            head=head,
            workers=workers,
            diagnostics=self.take_diagnostics(),
        )

    def _check_log_length(self, head: int, checkpoint: int) -> int:
        """The head, or (when the log is shorter than the store's own records say: lost
        segments) a new incarnation whose positions start past every recorded one, with a
        store.log_lost diagnostic, so no earlier cursor can ever name a new event."""
        recorded = max(
            int(self._root.record.get("head", 0) or 0),
            checkpoint,
            self._projections.newest_checkpointed(),
        )
        if head >= recorded:
            return head
        self._root.new_incarnation()
        self._root.diagnose(
            "error",
            "store.log_lost",
            f"the event log ends at position {head} but the store's records reach {recorded}: "
            "events were lost (missing segments); a new incarnation started, so cursors "
            "issued before it are unknown and must re-read the transcript",
        )
        return recorded

    # -- writing -------------------------------------------------------------------------------

    def add_worker(self, record: WorkerRecord) -> None:
        """Create the Worker's directory now (so a read-only root fails the create before
        anything changes) and write its record with the next sync."""
        self._root.check_failed()
        self._projections.add(record)

    def append_events(self, events: Sequence[Event]) -> None:
        """Record events all-or-nothing: every one is encoded and checked to be the next
        position before any is taken, so a refused batch leaves the store as it was."""
        self._root.check_failed()
        self._log.append(events)
        self._projections.apply(events)

    def flush(self) -> None:
        """Write the log records appended so far to the OS (no fsync). Projection files are
        written at checkpoints and before they are read: the log can always rebuild them."""
        self._log.flush()

    async def sync(self) -> None:
        """Make every appended event durable per the fsync mode (a group commit in ``batch``:
        concurrent callers share one fsync)."""
        await self._log.sync()

    async def maintain(self) -> None:
        """Advance the checkpoint by one slice, if one is due (the Runtime calls it after a
        commit is published, so publication never waits for a checkpoint)."""
        self._root.check_failed()
        await self._checkpoints.maintain()

    def checkpoint(self) -> None:
        """Snapshot every changed Worker now and record the checkpoint position (blocking:
        for :meth:`close` and tools, never while a slice is being written)."""
        self._checkpoints.checkpoint()

    # -- reading ---------------------------------------------------------------------------------

    def read_events(self, after: int, limit: int, worker_id: str | None) -> list[Event] | None:
        """Up to ``limit`` events after ``after`` from disk (one Worker's, if given), or
        ``None`` when the log no longer holds the next one (pruned by retention). Blocks on
        disk: async code uses :meth:`read_events_async`."""
        if not self._prepare_read(worker_id):
            return None
        return self._reads.read_events(after, limit, worker_id, self._log.written)

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
            self._reads.read_events, after, limit, worker_id, self._log.written
        )

    def _prepare_read(self, worker_id: str | None) -> bool:
        """Write what a read must see (on the loop: the append path's order); ``False`` when
        the store failed and reads nothing more."""
        if self._root.failed is not None:
            return False
        self._projections.flush((worker_id,) if worker_id is not None else ())
        return True

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        return await self._reads.read_transcript(worker_id, start, limit)

    def mark_history(self, worker_id: str) -> HistoryMark:
        """Where a recovered Worker's conversation on disk ends now. On the loop, and bounded:
        the Worker's pending transcript lines are written (the append path's order) and its
        transcript's size is taken (two ``stat`` calls). Only a transcript found shorter than
        its projection is rebuilt here, from the log: a repair, never the normal path."""
        return self._reads.mark_history(worker_id)

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
        return await anyio.to_thread.run_sync(self._reads.history_upto, mark, max_tokens)

    def load_history(self, worker_id: str, max_tokens: int | None = None) -> list[ContextMessage]:
        """:meth:`mark_history` and :meth:`read_history` in one blocking call (for tools and
        tests; never called on the Runtime's event loop)."""
        return self._reads.history_upto(self.mark_history(worker_id), max_tokens)

    def take_diagnostics(self) -> list[StoreDiagnostic]:
        """Diagnostics recorded since the last call (repairs made while serving reads)."""
        return self._root.take_diagnostics()

    @property
    def oldest_position(self) -> int:
        return self._log.oldest

    @property
    def failpoints(self) -> Failpoints:
        """The store's fault-injection points (armed at open; a test's hooks, added before or
        after it, are kept)."""
        return self._root.fp

    async def close(self) -> None:
        if self._root.lock_fd is None:
            return
        try:
            if self._root.failed is None:
                await self.sync()
                await self._checkpoints.close()
                self._log.close()
                with io_errors("closing the store"):
                    self._root.mark_running(clean=True, head=self._log.written)
        finally:
            self._root.unlock()
