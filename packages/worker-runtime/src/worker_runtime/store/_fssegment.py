"""One segment of the fs store's event log, its record format and its recovery (private to
``store.fs``).

A segment is ``events/<first>.jsonl`` with its offset index ``<first>.idx``: the records of
positions ``first, first + 1, …`` one line each, ``{"p", "c", "k", "w", "t", "a", "d"}``. A
slot whose record a repair found missing or unreadable holds ``{"quarantined": true}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..events import Event
from ._fsfiles import IndexedLog
from ._fsroot import StoreRoot

__all__ = [
    "PLACEHOLDER",
    "Segment",
    "event_line",
    "event_of",
    "recover_segment",
    "trusted_prefix",
]

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


class Segment:
    __slots__ = ("first", "log")

    def __init__(self, events_dir: Path, first: int, mode: int) -> None:
        self.first = first
        name = f"{first:020d}"
        self.log = IndexedLog(events_dir / f"{name}.jsonl", events_dir / f"{name}.idx", mode)


def trusted_prefix(segment: Segment, checkpoint: int) -> tuple[int, int]:
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


def recover_segment(root: StoreRoot, segment: Segment, checkpoint: int) -> int:
    """Scan the active segment after what the last checkpoint covered: truncate a torn
    tail, quarantine bad records (the records after them still load), rebuild its index.
    Returns the position of its last event. The cost grows with the events after the
    checkpoint, not with the segment's length."""
    kept, begin = trusted_prefix(segment, checkpoint)
    # An index the checkpoint's record did not match is rebuilt whole, whatever its length.
    distrusted = kept == 0 and checkpoint >= segment.first
    raw = segment.log.read_span_raw(begin)
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
        root.fp.hit("recovery.parse")
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
            root.quarantine(segment.log.data_path, offset, line, str(exc))
            quarantined = explained = True
            continue
        if expected < position and not explained:
            root.diagnose(
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
        root.diagnose(
            "warning",
            "store.torn_tail_truncated",
            f"a torn last record of the event log ({segment.log.data_path.name}) was truncated",
        )
    if quarantined:
        root.fp.hit("recovery.quarantine")
    if quarantined or gap:
        # Records move: the segment is rewritten whole, atomically (its trusted prefix
        # as it is on disk).
        prefix = segment.log.read_span(0, begin)
        segment.log.rewrite([(line + b"\n", True) for line in prefix] + good, durable=True)
    elif torn or distrusted or segment.log.count != kept + len(good):
        segment.log.reindex_tail(end, kept, starts, durable=True)
    if torn:
        root.fp.hit("recovery.truncate")
    return expected - 1
