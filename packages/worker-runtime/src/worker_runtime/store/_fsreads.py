"""The fs store's reads: events by position (runtime-wide or one Worker's), transcripts, and a
recovered Worker's history (private to ``store.fs``).

Reads run in a worker thread where they can: the log and the projection files only grow on
the event loop's side, below the positions and sizes a read was handed. A transcript found
damaged or short is repaired from the log, with a diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import orjson

from ..events import Event
from ..execution import ContextMessage
from . import HistoryMark, TranscriptEntry
from ._fsfiles import StoreIOError, io_errors
from ._fslog import SegmentedLog
from ._fsprojections import Projections
from ._fsroot import StoreRoot
from ._fsworkers import WorkerFiles, entry_of
from ._projection import TurnMarker, rebuild_history

__all__ = ["StoreReads"]


class StoreReads:
    """Reads of the log and of the projections of one store."""

    def __init__(self, root: StoreRoot, log: SegmentedLog, projections: Projections) -> None:
        self._root = root
        self._log = log
        self._projections = projections

    def read_events(
        self, after: int, limit: int, worker_id: str | None, written: int
    ) -> list[Event] | None:
        self._root.fp.hit("read.events")
        try:
            with io_errors("reading the event log"):
                return self._read_events_upto(after, limit, worker_id, written)
        except StoreIOError:
            if after + 1 < self._log.oldest:  # pruned while it was being read
                return None
            raise

    def _read_events_upto(
        self, after: int, limit: int, worker_id: str | None, written: int
    ) -> list[Event] | None:
        if after + 1 < self._log.oldest:
            return None
        if worker_id is None:
            return self._log.read_range(after + 1, written, limit)
        files = self._projections.workers.get(worker_id)
        if files is None:
            return []
        positions = self._worker_positions_after(files, after, limit)
        if positions and positions[0] < self._log.oldest:
            return None
        out: list[Event] = []
        for position in positions:
            if position > written:
                break
            for event in self._log.read_range(position, position):
                if event.worker_id != worker_id:  # the Worker's index names another's event
                    self._log.misaligned(self._log.segments[-1], position, "another Worker's event")
                out.append(event)
        return out

    def _worker_positions_after(self, files: WorkerFiles, after: int, limit: int) -> list[int]:
        # The Worker's worker_created position is in its record, not in its index file.
        first = (
            [files.created] if after < files.created and files.created >= self._log.oldest else []
        )
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

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> Sequence[TranscriptEntry]:
        files = self._projections.workers.get(worker_id)
        if files is None:
            return []
        self._projections.flush((worker_id,))
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
                    self._root.quarantine(bad, offset, line, f"not valid JSON ({exc.msg})")
            self._projections.rebuild(worker_id, files)
            lines = files.transcript.read_records(start, limit)
        return [entry_of(r) for r in map(orjson.loads, lines) if "m" not in r][:limit]

    def mark_history(self, worker_id: str) -> HistoryMark:
        """Where a recovered Worker's conversation on disk ends now. On the loop, and bounded:
        the Worker's pending transcript lines are written (the append path's order) and its
        transcript's size is taken (two ``stat`` calls). Only a transcript found shorter than
        its projection is rebuilt here, from the log: a repair, never the normal path."""
        files = self._projections.workers.get(worker_id)
        if files is None:
            return HistoryMark(worker_id, 0, 0)
        self._projections.flush((worker_id,))
        with io_errors("reading a transcript"):
            if files.transcript.count < files.state.transcript_len:
                self._projections.rebuild(worker_id, files)
            size, count = files.transcript.sizes()
        return HistoryMark(worker_id, size, count)

    def history_upto(self, mark: HistoryMark, max_tokens: int | None) -> list[ContextMessage]:
        self._root.fp.hit("read.history")
        files = self._projections.workers.get(mark.worker_id)
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
