"""The fs store's projections (``Projections``, ``WorkerFiles``): records, state and
transcript files kept from the events, loaded from disk and rebuilt from the log, on a real
directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime.store._fsworkers import entry_of

from ._fsparts import Parts


def transcript(parts: Parts, worker_id: str) -> list[str]:
    import orjson

    lines = parts.projections.workers[worker_id].transcript.read_records(0, 100)
    return [entry_of(r).content for r in map(orjson.loads, lines) if "m" not in r]


def test_a_workers_record_is_written_with_the_log_before_its_events(tmp_path: Path) -> None:
    """add() makes the Worker's directory at once; its worker.json is written by the log's
    next flush, with the events appended after it."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    directory = parts.projections.workers["w1"].dir
    assert directory.is_dir()
    assert not (directory / "worker.json").exists()
    parts.log.flush()
    assert json.loads((directory / "worker.json").read_text())["worker_id"] == "w1"
    assert parts.log.written == 1


def test_events_project_onto_state_and_files_only_when_flushed(tmp_path: Path) -> None:
    """Appended events change the Worker's state and mark it dirty at once; its transcript
    and position files get their lines when its projection is flushed."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    parts.notes("w1", "one", "two")
    files = parts.projections.workers["w1"]
    assert files.state.transcript_len == 2
    assert files.state.position == 3
    assert parts.projections.dirty == {"w1"}
    assert files.transcript.count == 0
    parts.projections.flush(["w1"])
    assert transcript(parts, "w1") == ["one", "two"]
    assert files.events.read_records(0, 10) == [b"2", b"3"]  # its creation is in its record


def test_a_lost_transcript_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    """rebuild() writes a Worker's transcript and position files again from its events in the
    log, with a store.transcript_rebuilt diagnostic."""
    parts = Parts(tmp_path)
    parts.two_workers()
    files = parts.projections.workers["w1"]
    files.transcript.truncate(0, 0)
    parts.projections.rebuild("w1", files)
    assert transcript(parts, "w1") == ["one", "two"]
    assert [d.code for d in parts.root.take_diagnostics()] == ["store.transcript_rebuilt"]


def test_workers_load_from_their_own_files_and_replay_catches_them_up(tmp_path: Path) -> None:
    """Without a catalog or a checkpoint, load() finds each Worker from its worker.json and
    replay() brings its state and transcript up to the log's head."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    parts.notes("w1", "one", "two")
    parts.worker("w2", ordinal=2)
    parts.log.flush()
    parts.log.close()
    again = Parts(tmp_path)
    records = again.projections.load({}, clean=False, checkpoint=0)
    assert [r.worker_id for r in records] == ["w1", "w2"]
    again.log.written = again.head
    again.projections.replay(0, again.head)
    assert again.projections.workers["w1"].state.transcript_len == 2
    assert again.projections.dirty == {"w1", "w2"}
    again.projections.flush(["w1"])
    assert transcript(again, "w1") == ["one", "two"]


def test_a_worker_without_its_record_is_skipped_with_a_diagnostic(tmp_path: Path) -> None:
    """A Worker directory whose worker.json is gone is left out of load(), with a
    worker_snapshot_ignored diagnostic naming it; the others load."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    parts.worker("w2", ordinal=2)
    parts.log.flush()
    (parts.projections.workers["w2"].dir / "worker.json").unlink()
    shutil.rmtree(parts.root.quarantine_dir, ignore_errors=True)
    again = Parts(tmp_path)
    records = again.projections.load({}, clean=True, checkpoint=0)
    assert [r.worker_id for r in records] == ["w1"]
    found = [(d.code, d.worker_id) for d in again.root.take_diagnostics()]
    assert found == [("worker_snapshot_ignored", "w2")]
