"""The fs store's catalog (one file with every Worker's checkpointed state): trusted only when
it is consistent with the checkpoint and the Workers on disk, rebuilt when stale or corrupt."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import Runtime
from worker_runtime.store.fs import FsRuntimeStore

from .crash_harness import Ledger

pytestmark = pytest.mark.anyio


def rt_on(root: Path) -> Runtime:
    return Runtime(runtime_id="cat", store=FsRuntimeStore(root))


async def notes(rt: Runtime, wid: str) -> list[str]:
    page = await rt.read_transcript(rt.ref(wid), limit=256)
    return [i.content for i in page.items]


async def test_a_stale_catalog_is_detected_and_rebuilt(tmp_path: Path) -> None:
    """A catalog older than the checkpoint (put back from a backup) is not trusted: the open
    reports store.catalog_rebuilt and every Worker shows what the log holds."""
    root = tmp_path / "store"
    async with rt_on(root) as rt:
        w = await rt.create_worker()
        await rt.send_input(w.worker_ref, {"content": "one", "kind": "system"})
    shutil.copy(root / "catalog.jsonl", tmp_path / "old-catalog")
    async with rt_on(root) as rt:
        await rt.send_input(w.worker_ref, {"content": "two", "kind": "system"})
        other = await rt.create_worker()
    shutil.copy(tmp_path / "old-catalog", root / "catalog.jsonl")
    async with rt_on(root) as rt:
        assert "store.catalog_rebuilt" in [d.code for d in await rt.diagnostics()]
        assert await notes(rt, w.worker_id) == ["one", "two"]
        assert len((await rt.list_workers()).workers) == 2
        assert other.worker_id in [x.worker_id for x in (await rt.list_workers()).workers]
    async with rt_on(root) as rt:  # rebuilt: trusted again
        assert "store.catalog_rebuilt" not in [d.code for d in await rt.diagnostics()]
        assert await notes(rt, w.worker_id) == ["one", "two"]


async def test_a_corrupt_catalog_is_rebuilt_from_the_workers_and_the_log(tmp_path: Path) -> None:
    """A catalog with a bad line is rebuilt (store.catalog_rebuilt) and nothing is lost."""
    root = tmp_path / "store"
    async with rt_on(root) as rt:
        ids = [(await rt.create_worker()).worker_id for _ in range(3)]
        for wid in ids:
            await rt.send_input(rt.ref(wid), {"content": f"for {wid}", "kind": "system"})
    lines = (root / "catalog.jsonl").read_bytes().splitlines(keepends=True)
    lines.insert(1, b"{not a catalog line\n")
    (root / "catalog.jsonl").write_bytes(b"".join(lines))
    async with rt_on(root) as rt:
        assert "store.catalog_rebuilt" in [d.code for d in await rt.diagnostics()]
        for wid in ids:
            assert await notes(rt, wid) == [f"for {wid}"]


async def test_a_catalog_naming_a_worker_whose_files_are_gone_is_a_diagnostic(
    tmp_path: Path,
) -> None:
    """When the catalog holds a Worker whose directory is gone, that Worker is skipped with
    store.catalog_contradicts_log and the rest load."""
    root = tmp_path / "store"
    async with rt_on(root) as rt:
        gone = await rt.create_worker()
        kept = await rt.create_worker()
    shutil.rmtree(next(d for d in (root / "workers").iterdir() if gone.worker_id in d.name))
    async with rt_on(root) as rt:
        found = [d for d in await rt.diagnostics() if d.code == "store.catalog_contradicts_log"]
        assert [d.worker_id for d in found] == [gone.worker_id]
        assert [w.worker_id for w in (await rt.list_workers()).workers] == [kept.worker_id]


async def test_a_catalog_from_before_a_crash_is_caught_up_by_replay(tmp_path: Path) -> None:
    """With checkpoints far apart, a SIGKILL leaves a catalog behind the log: the next opens
    replay the rest (no rebuild needed) and every acknowledged effect is there once."""
    seed = next(s for s in range(1000) if random.Random(s).choice([0.02, 0.3, 60.0]) == 60.0)
    ledger = Ledger(tmp_path / "store")
    assert ledger.run(seed, ops=30, kill_after=25).killed
    assert ledger.run(seed + 1000, ops=0).verified  # seeds of this form checkpoint rarely too
    async with Runtime(runtime_id="loop", store=FsRuntimeStore(ledger.root)) as rt:
        assert "store.catalog_rebuilt" not in [d.code for d in await rt.diagnostics()]


def newest_lines_bytes(path: Path) -> int:
    """Bytes of the newest catalog line of each Worker (what an open needs)."""
    newest: dict[str, int] = {}
    for line in path.read_bytes().splitlines():
        item = json.loads(line)
        if "w" in item:
            newest[item["w"]] = len(line) + 1
    return sum(newest.values())


async def test_the_catalog_stays_bounded_by_bytes_when_busy_workers_carry_many_keys(
    tmp_path: Path,
) -> None:
    """Workers whose checkpointed state carries hundreds of idempotency keys, checkpointed
    again and again, do not grow the catalog past twice what its newest lines hold plus a
    mebibyte (an open reads the whole file), and every key still answers after a restart."""
    root = tmp_path / "store"
    store = FsRuntimeStore(root, checkpoint_interval_s=3600)
    async with Runtime(runtime_id="cat", store=store) as rt:
        workers = [await rt.create_worker() for _ in range(3)]
        for round_ in range(40):
            for w in workers:
                for i in range(10):
                    key = f"{w.worker_id}-{round_}-{i}-".ljust(200, "k")
                    body = {"content": f"n{round_}.{i}", "kind": "system", "idempotency_key": key}
                    await rt.send_input(w.worker_ref, body)
            store.checkpoint()
            catalog = root / "catalog.jsonl"
            assert catalog.stat().st_size <= 2 * newest_lines_bytes(catalog) + (1 << 20) + (
                newest_lines_bytes(catalog)  # the lines this checkpoint appended
            )
    async with rt_on(root) as rt:
        w = workers[0]
        key = f"{w.worker_id}-39-9-".ljust(200, "k")
        again = await rt.send_input(
            w.worker_ref, {"content": "n39.9", "kind": "system", "idempotency_key": key}
        )
        assert again.transcript_sequence == 400
