"""The fs store's checkpoints (``Checkpoints``): snapshots, catalog lines and the checkpoint
position, written whole or in slices, and the catalog read back, on a real directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime.store._fscatalog import read_catalog

from ._fsparts import Parts


def test_a_checkpoint_writes_snapshots_catalog_lines_and_the_position(tmp_path: Path) -> None:
    """checkpoint() writes a changed Worker's state and overview snapshots and its catalog
    line, then names the log's written position in checkpoint.json; retention may prune to
    it."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    parts.notes("w1", "one")
    parts.checkpoints.checkpoint()
    directory = parts.projections.workers["w1"].dir
    assert json.loads((directory / "state.json").read_text())["state"]["transcript_len"] == 1
    assert json.loads((directory / "overview.json").read_text())["transcript_len"] == 1
    assert parts.root.read_checkpoint() == parts.log.written == parts.log.checkpoint == 2
    catalog = read_catalog(parts.root.catalog_path, 2)
    assert catalog.problem is None
    assert list(catalog.entries) == ["w1"]
    assert parts.projections.dirty == set()


def test_a_worker_with_only_its_creation_gets_a_catalog_line_only(tmp_path: Path) -> None:
    """A Worker whose only event is its creation is recorded by its catalog line: no
    state.json or overview.json of its own is written."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    parts.checkpoints.checkpoint()
    assert not (parts.projections.workers["w1"].dir / "state.json").exists()
    assert list(read_catalog(parts.root.catalog_path, 1).entries) == ["w1"]


def test_an_untrusted_catalog_is_reported_and_rewritten(tmp_path: Path) -> None:
    """A catalog with a bad line yields no entries and store.catalog_rebuilt; the next pass
    rewrites it whole, and it is trusted again."""
    parts = Parts(tmp_path)
    parts.worker("w1")
    parts.notes("w1", "one")
    parts.checkpoints.checkpoint()
    with parts.root.catalog_path.open("ab") as f:
        f.write(b"{not a line\n")
    again = Parts(tmp_path)
    assert again.checkpoints.open_catalog(2) == {}
    assert [d.code for d in again.root.take_diagnostics()] == ["store.catalog_rebuilt"]
    again.projections.load({}, clean=True, checkpoint=2)
    again.log.written = again.head
    again.projections.replay(2, again.head)
    again.checkpoints.checkpoint()
    assert read_catalog(again.root.catalog_path, 2).problem is None


@pytest.mark.anyio
async def test_a_pass_is_written_in_slices(tmp_path: Path) -> None:
    """A pass over more changed Workers than a slice holds takes several steps; the
    checkpoint position is written only by the step that ends it."""
    parts = Parts(tmp_path)
    count = parts.checkpoints.CHECKPOINT_SLICE + 4
    for i in range(count):
        parts.worker(f"w{i:02d}", ordinal=i + 1)
        parts.notes(f"w{i:02d}", "note")
    await parts.checkpoints.step()
    written = [w for w, f in parts.projections.workers.items() if (f.dir / "state.json").exists()]
    assert len(written) == parts.checkpoints.CHECKPOINT_SLICE
    assert parts.root.read_checkpoint() == 0
    await parts.checkpoints.step()
    assert parts.root.read_checkpoint() == parts.log.written == 2 * count
    assert len(read_catalog(parts.root.catalog_path, 2 * count).entries) == count


@pytest.mark.anyio
async def test_no_pass_starts_before_the_interval(tmp_path: Path) -> None:
    """With a long interval, a step writes nothing even though a Worker changed."""
    parts = Parts(tmp_path, interval=3600)
    parts.worker("w1")
    parts.notes("w1", "one")
    await parts.checkpoints.step()
    assert parts.root.read_checkpoint() == 0
    assert parts.projections.dirty == {"w1"}
