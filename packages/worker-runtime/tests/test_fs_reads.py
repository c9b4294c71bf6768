"""The fs store's reads (``StoreReads``): one Worker's events through its index, transcripts
repaired from the log when damaged, and history up to a mark, on a real directory."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime.errors import StoreCorrupt
from worker_runtime.store._fsreads import StoreReads

from ._fsparts import Parts


def two_workers(tmp_path: Path) -> tuple[Parts, StoreReads]:
    parts = Parts(tmp_path)
    parts.two_workers()
    return parts, StoreReads(parts.root, parts.log, parts.projections)


def test_a_workers_events_are_read_through_its_index(tmp_path: Path) -> None:
    """A Worker's read returns its own events only (its creation included), after a
    position and up to a limit; a runtime-wide read returns every event."""
    parts, reads = two_workers(tmp_path)
    mine = reads.read_events(0, 10, "w1", parts.log.written)
    assert mine is not None
    assert [e.position for e in mine] == [1, 3, 5]
    after = reads.read_events(1, 1, "w1", parts.log.written)
    assert after is not None
    assert [e.position for e in after] == [3]
    every = reads.read_events(0, 10, None, parts.log.written)
    assert every is not None
    assert len(every) == 5
    assert reads.read_events(0, 10, "nobody", parts.log.written) == []


def test_an_index_naming_another_workers_event_is_refused(tmp_path: Path) -> None:
    """When a Worker's position file names another Worker's event, the read is refused as
    log_misaligned instead of returning that event."""
    parts, reads = two_workers(tmp_path)
    files = parts.projections.workers["w1"]
    data = files.events.data_path
    data.write_bytes(data.read_bytes().replace(b"3\n", b"4\n"))
    with pytest.raises(StoreCorrupt) as refused:
        reads.read_events(0, 10, "w1", parts.log.written)
    assert refused.value.details["reason"] == "log_misaligned"


def test_events_retention_pruned_read_as_none(tmp_path: Path) -> None:
    """A read after a position older than the log's oldest is None (pruned), not a page."""
    parts, reads = two_workers(tmp_path)
    parts.log.oldest = 3
    assert reads.read_events(1, 10, None, parts.log.written) is None


@pytest.mark.anyio
async def test_a_damaged_transcript_is_repaired_from_the_log(tmp_path: Path) -> None:
    """A transcript line that is not JSON is quarantined and the transcript rebuilt from the
    log: the read returns every entry, with diagnostics saying so."""
    parts, reads = two_workers(tmp_path)
    path = parts.projections.workers["w1"].transcript.data_path
    lines = path.read_bytes().split(b"\n")
    lines[0] = b"x" * len(lines[0])
    path.write_bytes(b"\n".join(lines))
    entries = await reads.read_transcript("w1", 0, 10)
    assert [e.content for e in entries] == ["one", "two"]
    codes = [d.code for d in parts.root.take_diagnostics()]
    assert codes == ["store.record_quarantined", "store.transcript_rebuilt"]


def test_history_up_to_a_mark_leaves_out_what_came_after(tmp_path: Path) -> None:
    """history_upto() returns the conversation up to the mark in model order; entries added
    after the mark are not in it, and a budget keeps only the newest."""
    parts, reads = two_workers(tmp_path)
    mark = reads.mark_history("w1")
    assert (mark.count, mark.size > 0) == (2, True)
    parts.notes("w1", "three")
    parts.projections.flush(["w1"])
    assert [m.content for m in reads.history_upto(mark, None)] == ["one", "two"]
    assert len(reads.history_upto(reads.mark_history("w1"), None)) == 3
    assert reads.history_upto(reads.mark_history("nobody"), None) == []
