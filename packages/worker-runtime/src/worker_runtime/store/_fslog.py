"""The fs store's event log: its segments, appends, group commit, range reads, roll and
retention (private to ``store.fs``).

The log is the write-ahead log and the source of truth. Appended events wait as encoded lines
until :meth:`SegmentedLog.flush` writes them to the active segment (rolling to a new one when
it is full), and :meth:`SegmentedLog.sync` makes them durable per the fsync mode. A read names
positions; a record found in a slot other than its own is refused, never returned.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.lowlevel
import orjson

from ..errors import StoreCorrupt
from ..events import Event
from ._fsfiles import StoreIOError, atomic_write_json
from ._fsroot import StoreRoot
from ._fssegment import Segment, event_line, event_of, recover_segment

__all__ = ["SegmentedLog"]


class SegmentedLog:
    """The event log of one store root, in segments of at most ``segment_max`` events, of
    which at most ``max_segments`` are kept (``None``: all)."""

    def __init__(self, root: StoreRoot, *, segment_max: int, max_segments: int | None) -> None:
        self._root = root
        self.segment_max = segment_max
        self.max_segments = max_segments
        self.segments: list[Segment] = []
        self._pending: list[tuple[int, bytes]] = []
        self._pending_files: list[tuple[Path, Any]] = []
        self.appended = 0  # newest position handed to the log
        self.written = 0  # newest position written to the OS
        self.durable = 0  # newest position synced per the fsync mode
        self.oldest = 1  # oldest position still on disk
        #: The position the last checkpoint covered: retention never drops a segment past it
        #: (replay after a crash needs those events).
        self.checkpoint = 0
        self._syncing: anyio.Event | None = None

    # -- opening -------------------------------------------------------------------------------

    def open(self, checkpoint: int) -> int:
        """Find the segments on disk and recover the active one (see
        :func:`~._fssegment.recover_segment`); the position of the log's last event."""
        events_dir, mode = self._root.events_dir, self._root.file_mode
        firsts = sorted(int(p.stem) for p in events_dir.glob("*.jsonl") if p.stem.isdigit())
        self.segments = [Segment(events_dir, first, mode) for first in firsts]
        if not self.segments:
            self.segments.append(Segment(events_dir, 1, mode))
            self._write_active_pointer()
            self.oldest = 1
            return 0
        self.oldest = self.segments[0].first
        head = recover_segment(self._root, self.segments[-1], checkpoint)
        self._write_active_pointer()
        return head

    def start_at(self, head: int) -> None:
        """Take ``head`` as the newest position appended, written and durable."""
        self.appended = self.written = self.durable = head

    def _write_active_pointer(self) -> None:
        atomic_write_json(
            self._root.events_dir / "active.json",
            {"segment": f"{self.segments[-1].first:020d}.jsonl"},
            durable=self._root.durable,
            mode=self._root.file_mode,
        )

    # -- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> None:
        """Take events all-or-nothing: every one is encoded and checked to be the next
        position before any is taken, so a refused batch leaves the log as it was."""
        lines: list[tuple[int, bytes]] = []
        expected = self.appended + 1
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
        self._pending.extend(lines)
        if lines:
            self.appended = lines[-1][0]

    def write_file_first(self, path: Path, value: Any) -> None:
        """Write a small JSON file (atomically) with the next flush, before the lines
        appended after it (a Worker's record, before its events)."""
        self._pending_files.append((path, value))

    def flush(self) -> None:
        """Write what was appended so far to the OS (no fsync); an OS error fails the store."""
        self._root.check_failed()
        if not (self._pending or self._pending_files):
            return
        try:
            self._write()
        except OSError as exc:
            self._root.fail(exc)

    def _write(self) -> None:
        for path, value in self._pending_files:
            atomic_write_json(path, value, durable=self._root.durable, mode=self._root.file_mode)
        self._pending_files.clear()
        pending, self._pending = self._pending, []
        index = 0
        while index < len(pending):
            active = self.segments[-1]
            room = self.segment_max - active.log.count
            if room <= 0:
                self.roll(pending[index][0])
                continue
            chunk = pending[index : index + room]
            active.log.append([(line, True) for _, line in chunk])
            index += len(chunk)
        if pending:
            self.written = pending[-1][0]
            self._root.fp.hit("append.written")

    async def sync(self) -> None:
        """Make every appended event durable per the fsync mode (a group commit in ``batch``:
        concurrent callers share one fsync)."""
        target = self.appended
        mode = self._root.fsync_mode
        while self.durable < target:
            self._root.check_failed()
            if self._syncing is not None:
                await self._syncing.wait()
                continue
            done = self._syncing = anyio.Event()
            try:
                if mode == "batch":
                    # Let every task that is ready run first, so the writers woken by the last
                    # round append before this one starts: one fsync then covers them all.
                    await anyio.lowlevel.checkpoint()
                upto = self.appended
                self.flush()
                if mode == "batch":
                    await anyio.to_thread.run_sync(self.fsync_data)
                elif mode == "always":
                    self.fsync_data()
                self.durable = max(self.durable, upto)
            except OSError as exc:
                self._root.fail(exc)
            finally:
                self._syncing = None
                done.set()

    def fsync_data(self) -> None:
        # The data file only: the active segment's index is rebuilt from it on open.
        self.segments[-1].log.fsync_data()

    def fsync_index(self) -> None:
        """Sync the active segment's files, index included (its index up to a checkpoint's
        position is trusted by the next open). Rolled segments were synced at the roll."""
        self.segments[-1].log.fsync_files()

    def roll(self, first: int) -> None:
        """Start a new active segment at position ``first``, then drop the oldest segments
        beyond ``max_segments`` that the last checkpoint covered."""
        old = self.segments[-1]
        old.log.fsync()
        old.log.close()
        segment = Segment(self._root.events_dir, first, self._root.file_mode)
        segment.log.append([])  # on disk at once: its first position is part of the log
        self.segments.append(segment)
        self._write_active_pointer()
        self._root.fp.hit("segment.roll")
        if self.max_segments is not None:
            self._prune(self.max_segments)

    def _prune(self, keep: int) -> None:
        # Never prune what the last checkpoint has not covered: replay after a crash needs
        # those events.
        while len(self.segments) > keep and self.segments[1].first - 1 <= self.checkpoint:
            dropped = self.segments.pop(0)
            dropped.log.close()
            dropped.log.data_path.unlink(missing_ok=True)
            self._root.fp.hit("prune")
            dropped.log.index_path.unlink(missing_ok=True)
        self.oldest = self.segments[0].first

    def close(self) -> None:
        for segment in self.segments:
            segment.log.close()

    # -- reading ---------------------------------------------------------------------------------

    def read_range(self, start: int, end: int, limit: int | None = None) -> list[Event]:
        """Up to ``limit`` events from ``start`` to ``end`` (inclusive) that are on disk;
        positions that no segment holds (the gap after an unclean shutdown) are stepped over."""
        out: list[Event] = []
        if limit is not None:
            end = min(end, self.written)
        # A copy: a read in a worker thread must not see a roll or prune half-way.
        segments = self.segments.copy()
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
                self.misaligned(segment, position, "records are missing from their slots")
            for offset, line in enumerate(lines):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.misaligned(segment, position + offset, "a record is not JSON")
                if "p" not in record:
                    continue  # a slot whose record was quarantined
                if record["p"] != position + offset:
                    self.misaligned(segment, position + offset, f"it holds {record['p']!r}")
                out.append(event_of(record, self._root.runtime_id))
            position += count
        return out

    def misaligned(self, segment: Segment, position: int, why: str) -> NoReturn:
        """A read found a record other than the one its slot must hold: a typed error and a
        diagnostic, never another event in its place."""
        name = segment.log.data_path.name
        self._root.diagnose(
            "error",
            "store.log_misaligned",
            f"the event log segment {name} does not hold position {position} where it must "
            f"({why}); the read was refused",
        )
        raise StoreCorrupt(
            "the event log is inconsistent at the requested position",
            details={"reason": "log_misaligned", "position": position},
        )

    def scan(self, start: int, end: int, batch: int = 4096) -> Iterator[list[Event]]:
        """Every event on disk from ``start`` to ``end``, in batches of at most ``batch``
        positions. Positions no segment holds (the gap each unclean restart leaves) are
        stepped over: an empty range is never mistaken for the end of the log."""
        position = start
        while position <= end:
            stop = min(end, position + batch - 1)
            events = self.read_range(position, stop)
            if events:
                yield events
                position = events[-1].position + 1
                continue
            holder = self.segment_holding(position)
            if holder is not None:  # quarantined slots only: the segment goes on
                position = stop + 1
                continue
            following = [s.first for s in self.segments if s.first > position]
            if not following:
                break
            position = following[0]

    def segment_holding(self, position: int) -> Segment | None:
        firsts = [s.first for s in self.segments]
        index = bisect.bisect_right(firsts, position) - 1
        if index < 0:
            return None
        segment = self.segments[index]
        return segment if position < segment.first + segment.log.count else None
