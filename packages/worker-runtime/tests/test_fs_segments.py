"""The fs store's segmented log (``SegmentedLog``, ``_fssegment``): appends, reads by
position, roll, retention, recovery of the active segment and refused misaligned reads, on a
real directory."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime.errors import StoreCorrupt
from worker_runtime.store._fsfiles import StoreIOError
from worker_runtime.store._fslog import SegmentedLog
from worker_runtime.store._fssegment import Segment, trusted_prefix

from ._fsparts import event, make_root


def opened(path: Path, *, segment_max: int = 3, max_segments: int | None = None) -> SegmentedLog:
    log = SegmentedLog(make_root(path), segment_max=segment_max, max_segments=max_segments)
    log.open(0)
    return log


def write(log: SegmentedLog, first: int, last: int) -> None:
    log.append([event(p, "output_delta", "w", text=f"t{p}") for p in range(first, last + 1)])
    log.flush()


def positions(log: SegmentedLog, start: int, end: int) -> list[int]:
    return [e.position for e in log.read_range(start, end)]


def test_appended_events_are_read_back_by_position(tmp_path: Path) -> None:
    """Flushed events read back whole, by any range of positions, and a limit caps a read."""
    log = opened(tmp_path)
    write(log, 1, 5)
    assert log.written == 5
    events = log.read_range(1, 5)
    assert [(e.position, e.data["text"], e.runtime_id) for e in events][1] == (2, "t2", "rt")
    assert positions(log, 2, 4) == [2, 3, 4]
    assert [e.position for e in log.read_range(1, 99, limit=2)] == [1, 2]


def test_a_full_segment_rolls_at_the_next_position(tmp_path: Path) -> None:
    """With three events per segment, seven events make segments 1, 4 and 7; active.json
    names the newest and reads cross the segments."""
    log = opened(tmp_path)
    write(log, 1, 7)
    assert [s.first for s in log.segments] == [1, 4, 7]
    active = json.loads((tmp_path / "events" / "active.json").read_text())
    assert active == {"segment": f"{7:020d}.jsonl"}
    assert positions(log, 1, 7) == list(range(1, 8))


def test_a_batch_out_of_order_or_not_encodable_is_refused_whole(tmp_path: Path) -> None:
    """An event that is not the next position (store_order) or cannot be encoded
    (store_encode) refuses its whole batch: nothing of it is written."""
    log = opened(tmp_path)
    write(log, 1, 2)
    with pytest.raises(StoreIOError) as order:
        log.append([event(4, "output_delta", "w")])
    assert order.value.details["reason"] == "store_order"
    with pytest.raises(StoreIOError) as encode:
        log.append([event(3, "output_delta", "w"), event(4, "output_delta", "w", x=object())])
    assert encode.value.details["reason"] == "store_encode"
    log.flush()
    assert log.appended == 2
    assert positions(log, 1, 9) == [1, 2]


def test_retention_drops_only_segments_the_checkpoint_covered(tmp_path: Path) -> None:
    """Beyond max_segments, a roll drops the oldest segments, files included, but never one
    the last checkpoint has not covered; the oldest position follows."""
    log = opened(tmp_path, segment_max=2, max_segments=2)
    write(log, 1, 7)
    assert [s.first for s in log.segments] == [1, 3, 5, 7]  # nothing checkpointed yet
    log.checkpoint = 6
    write(log, 8, 9)
    assert [s.first for s in log.segments] == [7, 9]
    assert log.oldest == 7
    assert not (tmp_path / "events" / f"{1:020d}.jsonl").exists()
    assert not (tmp_path / "events" / f"{5:020d}.idx").exists()
    assert positions(log, 1, 9) == [7, 8, 9]


def test_a_record_in_the_wrong_slot_is_refused(tmp_path: Path) -> None:
    """A slot holding another position's record is refused as log_misaligned, with a
    store.log_misaligned diagnostic, never returned in its place."""
    root = make_root(tmp_path)
    log = SegmentedLog(root, segment_max=10, max_segments=None)
    log.open(0)
    write(log, 1, 3)
    data = tmp_path / "events" / f"{1:020d}.jsonl"
    data.write_bytes(data.read_bytes().replace(b'"p":2,', b'"p":9,'))
    assert positions(log, 1, 1) == [1]
    with pytest.raises(StoreCorrupt) as refused:
        log.read_range(2, 3)
    assert refused.value.details == {"reason": "log_misaligned", "position": 2}
    assert [d.code for d in root.take_diagnostics()] == ["store.log_misaligned"]


def test_reopening_truncates_a_torn_last_record(tmp_path: Path) -> None:
    """A half-written last record is cut at open (store.torn_tail_truncated); the head is the
    last whole event and the next append takes the torn one's position."""
    log = opened(tmp_path, segment_max=10)
    write(log, 1, 3)
    log.close()
    data = tmp_path / "events" / f"{1:020d}.jsonl"
    data.write_bytes(data.read_bytes() + b'{"p":4,"c":')
    root = make_root(tmp_path)
    again = SegmentedLog(root, segment_max=10, max_segments=None)
    head = again.open(0)
    assert head == 3
    assert [d.code for d in root.take_diagnostics()] == ["store.torn_tail_truncated"]
    again.start_at(head)
    write(again, 4, 4)
    assert positions(again, 1, 4) == [1, 2, 3, 4]


def test_reopening_quarantines_a_bad_record_and_keeps_its_slot(tmp_path: Path) -> None:
    """A bad record amid good ones is quarantined at open and its slot kept empty: the events
    after it keep their positions."""
    log = opened(tmp_path, segment_max=10)
    write(log, 1, 3)
    log.close()
    data = tmp_path / "events" / f"{1:020d}.jsonl"
    lines = data.read_bytes().split(b"\n")
    lines[1] = b"garbage"
    data.write_bytes(b"\n".join(lines))
    root = make_root(tmp_path)
    again = SegmentedLog(root, segment_max=10, max_segments=None)
    assert again.open(0) == 3
    assert positions(again, 1, 3) == [1, 3]
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    assert "store.record_quarantined" in [d.code for d in root.take_diagnostics()]


def test_a_scan_steps_over_the_gap_between_segments(tmp_path: Path) -> None:
    """After a roll far ahead (as after an unclean shutdown), reads and scans step over the
    positions no segment holds instead of stopping there."""
    log = opened(tmp_path, segment_max=10)
    write(log, 1, 2)
    log.roll(100)
    log.start_at(99)
    write(log, 100, 101)
    assert positions(log, 1, 101) == [1, 2, 100, 101]
    assert [e.position for batch in log.scan(1, 101, batch=8) for e in batch] == [1, 2, 100, 101]
    assert log.segment_holding(50) is None


@pytest.mark.anyio
async def test_concurrent_syncs_share_a_group_commit(tmp_path: Path) -> None:
    """In batch mode, syncs by concurrent writers each return only once their events are
    written and durable."""
    log = SegmentedLog(make_root(tmp_path, fsync="batch"), segment_max=10, max_segments=None)
    log.open(0)

    async def writer(position: int) -> None:
        log.append([event(position, "output_delta", "w")])
        await log.sync()
        assert log.durable >= position
        assert log.written >= position

    async with anyio.create_task_group() as tg:
        for position in (1, 2, 3):
            tg.start_soon(writer, position)
    assert log.durable == log.written == 3


def test_a_checkpoints_record_is_trusted_only_where_it_is(tmp_path: Path) -> None:
    """The prefix a checkpoint covered is trusted (records and bytes) only when the index
    points at that checkpoint's own whole record."""
    log = opened(tmp_path, segment_max=10)
    write(log, 1, 4)
    segment = Segment(tmp_path / "events", 1, 0o600)
    lines = segment.log.read_span_raw(0, 1 << 20).split(b"\n")
    assert trusted_prefix(segment, 0) == (0, 0)
    assert trusted_prefix(segment, 2) == (2, len(lines[0]) + len(lines[1]) + 2)
    data = tmp_path / "events" / f"{1:020d}.jsonl"
    data.write_bytes(data.read_bytes().replace(b'"p":2,', b'"p":7,'))
    assert trusted_prefix(Segment(tmp_path / "events", 1, 0o600), 2) == (0, 0)
