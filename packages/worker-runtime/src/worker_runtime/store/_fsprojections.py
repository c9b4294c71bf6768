"""The fs store's projections of the log: every Worker's state and projection files, kept up
to date from the events, loaded at open, and rebuilt from the log when they are found short
or damaged (private to ``store.fs``).

Projection lines wait in memory (:class:`~._fsworkers.WorkerFiles`) until a checkpoint or a
read writes them, always after the log lines they derive from; the log can always rebuild
them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..events import Event
from . import WorkerRecord
from ._fscatalog import CatalogEntry
from ._fsfiles import decode_id, encode_id, io_errors, read_json, read_json_if_present
from ._fslog import SegmentedLog
from ._fsroot import SCHEMA_VERSION, StoreRoot
from ._fsworkers import WorkerFiles, record_of, transcript_lines
from ._projection import WorkerState

__all__ = ["Projections"]


class Projections:
    """Every Worker's projection: its state, its files and what is pending for them."""

    def __init__(self, root: StoreRoot, log: SegmentedLog) -> None:
        self._root = root
        self._log = log
        self.workers: dict[str, WorkerFiles] = {}
        self.dirty: set[str] = set()  # Workers the next checkpoint pass snapshots
        self.key_capacity = 1024  # idempotency keys kept per Worker (limits, at open)

    def add(self, record: WorkerRecord) -> None:
        """Create the Worker's directory now (so a read-only root fails the create before
        anything changes) and write its record with the log's next flush."""
        directory = self._root.workers_dir / encode_id(record.worker_id)
        with io_errors("creating a Worker"):
            directory.mkdir(mode=self._root.dir_mode, exist_ok=False)
        files = WorkerFiles(
            directory,
            WorkerState(worker_id=record.worker_id),
            record.position,
            self._root.file_mode,
        )
        self.workers[record.worker_id] = files
        files.record_json = {
            "schema_version": SCHEMA_VERSION,
            "worker_id": record.worker_id,
            "name": record.name,
            "profile": record.profile,
            "created_at": record.created_at,
            "ordinal": record.ordinal,
            "position": record.position,
        }
        self._log.write_file_first(directory / "worker.json", files.record_json)

    def apply(self, events: Sequence[Event]) -> None:
        """Project appended events onto their Workers' state and pending lines."""
        for event in events:
            files = self.workers.get(event.worker_id or "")
            if files is not None:
                self.project(files, event)

    def flush(self, worker_ids: Iterable[str]) -> None:
        """Write the log, then the pending projection lines of some Workers (after the log
        they derive from)."""
        self._log.flush()
        try:
            for worker_id in worker_ids:
                files = self.workers.get(worker_id)
                if files is None:
                    continue
                self.ensure_cut(files)
                if files.pending_transcript:
                    files.transcript.append(files.pending_transcript)
                    files.pending_transcript = []
                if files.pending_positions:
                    files.events.append(files.pending_positions)
                    files.pending_positions = []
                files.transcript.close()  # bounded descriptors, however many Workers
                files.events.close()
        except OSError as exc:
            self._root.fail(exc)

    def catalog_lines(self) -> list[bytes]:
        """Every Worker's newest catalog line (for a compaction)."""
        return [f.catalog_line for f in self.workers.values() if f.catalog_line]

    def newest_checkpointed(self) -> int:
        return max((f.checkpointed for f in self.workers.values()), default=0)

    def load(
        self, catalog: dict[str, CatalogEntry], *, clean: bool, checkpoint: int
    ) -> list[WorkerRecord]:
        """Load every Worker's record and checkpoint: from the catalog's entries, or for a
        Worker the catalog does not hold yet, from its own files. After an unclean shutdown
        each Worker's projection files are cut back to its checkpoint before replay touches
        them; after a clean one they are exactly at their checkpointed sizes already."""
        records: list[WorkerRecord] = []
        with os.scandir(self._root.workers_dir) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
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
                        (self._root.workers_dir, name),
                        WorkerState.from_json(known.state),
                        record.position,
                        self._root.file_mode,
                    )
                except (ValueError, KeyError, TypeError):
                    pass  # this entry is unusable: the Worker's own files decide
                else:
                    files.checkpointed = files.state.position
                    files.record_json = known.record
                    files.catalog_line = known.line
                    if not clean:
                        files.cut_sizes = known.files
                    self.workers[worker_id] = files
                    records.append(record)
                    continue
            entry = self._root.workers_dir / name
            try:
                raw = read_json(entry / "worker.json")
                record = record_of(raw, worker_id)
                files = WorkerFiles(
                    entry, WorkerState(worker_id=worker_id), record.position, self._root.file_mode
                )
                files.record_json = raw
                self.dirty.add(worker_id)  # its catalog line is written by the next checkpoint
                sizes: dict[str, list[int]] | None = {"transcript": [0, 0], "events": [0, 0]}
                snapshot = read_json_if_present(entry / "state.json")
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
                self._root.diagnose(
                    "warning",
                    "worker_snapshot_ignored",
                    "a Worker's worker.json is missing; the Worker was skipped",
                    worker_id,
                )
                continue
            except (ValueError, KeyError, TypeError) as exc:
                self._root.diagnose(
                    "warning",
                    "worker_snapshot_ignored",
                    f"a Worker's snapshot is corrupt ({exc}); the Worker was skipped",
                    worker_id,
                )
                continue
            self.workers[worker_id] = files
            records.append(record)
        self._states_from_creation(created)
        for worker_id in sorted(catalog.keys() - on_disk):
            self._root.diagnose(
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
            for event in self._log.read_range(positions[i], positions[j]):
                files = wanted.get(event.position)
                if (
                    files is None
                    or event.kind != "worker_created"
                    or event.worker_id != files.state.worker_id
                ):
                    continue
                self._apply(files.state, event)
                files.checkpointed = files.state.position
            i = j + 1

    def ensure_cut(self, files: WorkerFiles) -> None:
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
        self.rebuild(files.state.worker_id, files, upto=files.state.position)

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
            self._root.diagnose(
                "warning",
                "store.transcript_rebuilt",
                "a Worker's projection files were shorter than its checkpoint; they were "
                "rebuilt from the event log",
                worker_id,
            )

    def replay(self, checkpoint: int, head: int) -> None:
        """Bring every projection up to the head of the log: each Worker's files were cut back
        to its checkpoint, so the events after it are projected exactly once."""
        start = checkpoint + 1
        for files in self.workers.values():
            if files.checkpointed == 0:  # no checkpoint yet: replay from its creation
                start = min(start, files.created)
        for batch in self._log.scan(max(start, self._log.oldest), head):
            for event in batch:
                target = self.workers.get(event.worker_id or "")
                if target is not None:
                    self.project(target, event)

    def rebuild(self, worker_id: str, files: WorkerFiles, upto: int | None = None) -> None:
        files.cut_sizes = None
        lines: list[tuple[bytes, bool]] = []
        positions: list[tuple[bytes, bool]] = []
        for event in self._events_from_log(worker_id, files):
            if upto is not None and event.position > upto:
                break
            if event.kind != "worker_created":
                positions.append((f"{event.position}\n".encode(), True))
            lines.extend(transcript_lines(event))
        files.pending_transcript.clear()
        files.pending_positions.clear()
        files.transcript.rewrite(lines, durable=True)
        files.events.rewrite(positions, durable=True)
        self.dirty.add(worker_id)
        self._root.diagnose(
            "warning",
            "store.transcript_rebuilt",
            "a Worker's transcript projection was rebuilt from the event log",
            worker_id,
        )

    def _events_from_log(self, worker_id: str, files: WorkerFiles) -> list[Event]:
        """Every event of one Worker still in the log, found by a scan from its creation."""
        out: list[Event] = []
        for batch in self._log.scan(max(self._log.oldest, files.created), self._log.written):
            out.extend(e for e in batch if e.worker_id == worker_id)
        return out

    def project(self, files: WorkerFiles, event: Event) -> None:
        state = files.state
        if event.position <= state.position:
            return
        self.ensure_cut(files)
        self._apply(state, event)
        if event.kind != "worker_created":  # the record holds that position
            files.pending_positions.append((f"{event.position}\n".encode(), True))
        files.pending_transcript.extend(transcript_lines(event))
        self.dirty.add(state.worker_id)

    def _apply(self, state: WorkerState, event: Event) -> None:
        state.apply(
            event.position,
            event.kind,
            event.turn_id,
            event.cursor or "",
            event.at,
            event.data,
            keys=self.key_capacity,
        )
