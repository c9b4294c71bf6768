"""The fs store's checkpoints: snapshots of every changed Worker's projection, its catalog
line, and ``events/checkpoint.json``, written in bounded slices (private to ``store.fs``).

A pass snapshots every Worker that was dirty when it began; when it ends, every projection
reflects the log up to the position the pass began at, and the log may prune what it covers.
The catalog (``_fscatalog``) is this part's: it is read at open and compacted here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from ._fscatalog import Catalog, CatalogEntry, entry_line, read_catalog
from ._fsfiles import IndexedLog, atomic_write_json
from ._fslog import SegmentedLog
from ._fsprojections import Projections
from ._fsroot import SCHEMA_VERSION, StoreRoot
from ._fsworkers import overview_of

__all__ = ["Checkpoints"]


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


class Checkpoints:
    """The checkpoint passes of one store, and its catalog."""

    #: Workers snapshotted per commit while a checkpoint pass runs.
    CHECKPOINT_SLICE = 16

    def __init__(
        self, root: StoreRoot, log: SegmentedLog, projections: Projections, *, interval: float
    ) -> None:
        self._root = root
        self._log = log
        self._projections = projections
        self.interval = interval
        self._catalog = Catalog(root.catalog_path, 0, root.file_mode)
        self._catalog_rebuild = False
        self._slice_done: anyio.Event | None = None  # set while a checkpoint slice is written
        self._defer = False
        self._last_checkpoint = time.monotonic()
        self._pass_queue: list[str] | None = None
        self._recovering = False
        self._pass_position = 0

    def open_catalog(self, checkpoint: int) -> dict[str, CatalogEntry]:
        """The catalog's entries, or none (and a rebuild by the first pass, with a
        diagnostic) when it cannot be trusted."""
        read = read_catalog(self._root.catalog_path, checkpoint)
        self._catalog = Catalog(
            self._root.catalog_path,
            read.lines,
            self._root.file_mode,
            size=read.size,
            live=read.live,
        )
        if read.problem is None:
            return read.entries
        self._catalog_rebuild = True
        self._root.diagnose(
            "warning",
            "store.catalog_rebuilt",
            f"the catalog could not be trusted ({read.problem}); it is rebuilt from the "
            "Workers' own files and the event log",
        )
        return {}

    def opened(self) -> None:
        """After open: what replay rebuilt (and the catalog lines of Workers read from their
        own files) is written by the first pass, right after the open and in slices, so
        serving does not wait for it; otherwise the catalog is compacted if it is due."""
        if self._projections.dirty or self._catalog_rebuild:
            self._recovering = True
            self._last_checkpoint = 0.0
            # The Runtime's own first commit (as it starts) runs no slice: the pass begins
            # with the next one, once the Runtime serves.
            self._defer = True
        elif self._catalog.needs_compaction(len(self._projections.workers)):
            self._compact()

    async def maintain(self) -> None:
        """Advance the checkpoint by one slice, if one is due (but not on the first call after
        an open that left a pass to do)."""
        if self._defer:
            self._defer = False
            return
        await self.step()

    async def close(self) -> None:
        """Wait for a slice being written, then write a whole pass and close the catalog."""
        while self._slice_done is not None:
            await self._slice_done.wait()
        staged, compact = self._stage_all()
        await anyio.to_thread.run_sync(self._write_slice, staged, True, compact)
        self._passed(compact is not None)
        self._catalog.close()

    def _compact(self) -> None:
        """Rewrite the catalog with one line per Worker (its newest) and the checkpoint."""
        try:
            self._catalog.rewrite(
                self._projections.catalog_lines(), self._log.checkpoint, durable=self._root.durable
            )
        except OSError as exc:
            self._root.fail(exc)
        self._catalog_rebuild = False

    async def step(self) -> None:
        """Advance the checkpoint by a bounded slice of Workers, so no commit stalls on a long
        checkpoint. A pass snapshots every Worker that was dirty when it began; when it ends,
        every projection reflects the log up to the position the pass began at. A slice's new
        projection lines are appended on the loop (plain writes, in the order the loop appends
        everything); its fsyncs, snapshots and catalog lines are written in a worker thread,
        one slice at a time."""
        if self._slice_done is not None:
            return  # a slice is being written: a later commit goes on with the pass
        if self._pass_queue is None:
            if time.monotonic() - self._last_checkpoint < self.interval:
                return
            if not self._projections.dirty:
                self._last_checkpoint = time.monotonic()
                return
            self._log.flush()
            self._pass_queue = sorted(self._projections.dirty, reverse=True)
            self._pass_position = self._log.written
            self._projections.dirty.clear()
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
        compact = self._projections.catalog_lines() if finish and self._compaction_due() else None
        done = self._slice_done = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # a slice, once begun, is recorded
                await anyio.to_thread.run_sync(self._write_slice, staged, finish, compact)
        finally:
            self._slice_done = None
            done.set()
        if finish:
            self._passed(compact is not None)

    def checkpoint(self) -> None:
        """Snapshot every changed Worker now and record the checkpoint position (blocking:
        for :meth:`close` and tools, never while a slice is being written)."""
        self._root.check_failed()
        staged, compact = self._stage_all()
        self._write_slice(staged, True, compact)
        self._passed(compact is not None)

    def _stage_all(self) -> tuple[list[_Staged], list[bytes] | None]:
        self._log.flush()
        queue = set(self._pass_queue or ()) | self._projections.dirty
        self._pass_queue = None
        self._pass_position = self._log.written
        self._projections.dirty.clear()
        staged = [job for job in map(self._stage, sorted(queue)) if job is not None]
        return staged, self._projections.catalog_lines() if self._compaction_due() else None

    def _stage(self, worker_id: str) -> _Staged | None:
        """On the loop: append one Worker's pending projection lines (after the log they
        derive from) and take its snapshot, with the sizes of its files now; what must be
        fsynced and written atomically is left to :meth:`_write_slice`."""
        files = self._projections.workers.get(worker_id)
        if files is None:
            return None
        appended: list[IndexedLog] = []
        try:
            self._projections.ensure_cut(files)
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
            self._root.fail(exc)
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
        self._root.fp.hit("checkpoint.slice")
        durable = self._root.durable
        mode = self._root.file_mode
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
                self._root.fp.hit(
                    "recovery.checkpoint" if self._recovering else "checkpoint.finish"
                )
                if durable:
                    # The active segment's index up to the pass's position is trusted by the
                    # next open (it scans only what follows): it is synced before the
                    # checkpoint names that position. Rolled segments were synced at the roll.
                    self._log.fsync_index()
                self._catalog.mark(self._pass_position, durable=durable)
                self._root.write_checkpoint(self._pass_position)
                if compact is not None:
                    self._catalog.rewrite(compact, self._pass_position, durable=durable)
        except OSError as exc:
            self._root.fail(exc)

    def _passed(self, compacted: bool) -> None:
        """A pass is on disk: record it (prunes may now drop what it covers)."""
        self._pass_queue = None
        self._log.checkpoint = self._pass_position
        self._last_checkpoint = time.monotonic()
        self._recovering = False
        if compacted:
            self._catalog_rebuild = False

    def _compaction_due(self) -> bool:
        return self._catalog_rebuild or self._catalog.needs_compaction(
            len(self._projections.workers)
        )

    def _checkpointed_one(self) -> None:
        self._root.fp.hit("recovery.checkpoint" if self._recovering else "checkpoint.worker")
