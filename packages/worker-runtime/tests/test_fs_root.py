"""The fs store's root part (``StoreRoot``): the lock, ``runtime.json``, the checkpoint
position, the quarantine and the fail-stop, on a real directory."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime.errors import InvalidInput, RuntimeUnavailable, StoreCorrupt
from worker_runtime.models import Limits
from worker_runtime.store._fsfiles import StoreIOError
from worker_runtime.store._fsroot import StoreRoot

from ._fsparts import make_root


def test_a_second_lock_on_a_locked_root_is_refused(tmp_path: Path) -> None:
    """While one StoreRoot holds the lock, another is refused (store_locked); after unlock it
    may take it, and runtime.lock holds the pid."""
    first, second = make_root(tmp_path), make_root(tmp_path)
    first.lock()
    with pytest.raises(RuntimeUnavailable) as refused:
        second.lock()
    assert refused.value.details["reason"] == "store_locked"
    first.unlock()
    second.lock()
    assert (tmp_path / "runtime.lock").read_text() == f"{os.getpid()}\n"
    second.unlock()


def test_a_root_others_may_write_to_is_refused(tmp_path: Path) -> None:
    """A root writable by its group is refused as store_unsafe before anything is locked."""
    root = make_root(tmp_path / "r")
    os.chmod(root.path, 0o770)
    with pytest.raises(RuntimeUnavailable) as refused:
        root.lock()
    assert refused.value.details["reason"] == "store_unsafe"
    assert root.lock_fd is None


def test_runtime_json_records_the_head_and_refuses_another_version_or_runtime(
    tmp_path: Path,
) -> None:
    """A new root's record is clean; once marked running it reads as unclean with its head;
    another schema version is foreign_version and another runtime id invalid_input."""
    root = make_root(tmp_path)
    assert root.open_record("rt", Limits(), segment_max=10, max_segments=None) is True
    root.mark_running(clean=False, head=5)
    again = make_root(tmp_path)
    assert again.open_record("rt", Limits(), segment_max=10, max_segments=None) is False
    assert again.record["head"] == 5
    assert again.incarnation == root.incarnation
    with pytest.raises(InvalidInput):
        make_root(tmp_path).open_record("other", Limits(), segment_max=10, max_segments=None)
    raw = json.loads((tmp_path / "runtime.json").read_text())
    (tmp_path / "runtime.json").write_text(json.dumps({**raw, "schema_version": 2}))
    with pytest.raises(StoreCorrupt) as foreign:
        make_root(tmp_path).open_record("rt", Limits(), segment_max=10, max_segments=None)
    assert foreign.value.details["reason"] == "foreign_version"


def test_a_quarantined_record_is_kept_aside_with_a_diagnostic(tmp_path: Path) -> None:
    """quarantine() writes the bad line with its file and offset under quarantine/ and records
    one store.record_quarantined diagnostic, handed out once."""
    root = make_root(tmp_path)
    root.quarantine(root.events_dir / "x.jsonl", 7, b"junk", "not valid JSON")
    (kept,) = list(root.quarantine_dir.iterdir())
    saved = json.loads(kept.read_text())
    assert (saved["file"], saved["offset"], saved["content"]) == ("events/x.jsonl", 7, "junk")
    assert [d.code for d in root.take_diagnostics()] == ["store.record_quarantined"]
    assert root.take_diagnostics() == []


def test_a_failed_root_refuses_every_later_call(tmp_path: Path) -> None:
    """fail() raises store_failed without the OS error's path, and check_failed() raises the
    same error from then on."""
    root = make_root(tmp_path)
    root.check_failed()
    with pytest.raises(StoreIOError) as failed:
        root.fail(OSError(errno.ENOSPC, "No space left", str(tmp_path)))
    assert failed.value.details["reason"] == "store_failed"
    assert str(tmp_path) not in str(failed.value)
    with pytest.raises(StoreIOError) as again:
        root.check_failed()
    assert again.value is failed.value


def test_a_corrupt_checkpoint_position_reads_as_none_with_a_diagnostic(tmp_path: Path) -> None:
    """write_checkpoint's position reads back; a corrupt checkpoint.json reads as 0 with
    store.checkpoint_ignored (the whole log is replayed)."""
    root: StoreRoot = make_root(tmp_path)
    assert root.read_checkpoint() == 0
    root.write_checkpoint(12)
    assert root.read_checkpoint() == 12
    (root.events_dir / "checkpoint.json").write_text("{")
    assert root.read_checkpoint() == 0
    assert [d.code for d in root.take_diagnostics()] == ["store.checkpoint_ignored"]
