"""FsStoreReader: a read-only, lock-free view of an fs-store root, live or left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import InvalidInput, Runtime, RuntimeUnavailable, StoreCorrupt, WorkerNotFound
from worker_runtime.store.fs import FsRuntimeStore
from worker_runtime.store.fsread import FsStoreReader

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("fs_child.py")


def fs_runtime(root: Path, checkpoint_interval_s: float = 1.0) -> Runtime:
    store = FsRuntimeStore(root, checkpoint_interval_s=checkpoint_interval_s)
    return Runtime(runtime_id="local-rt", store=store)


async def talk(rt: Runtime, ref: Any, text: str) -> None:
    ack = await rt.send_input(ref, {"content": text})
    async with rt.subscribe(cursor=ack.cursor, worker=ref) as events:
        async for event in events:
            if event.kind == "turn_completed":
                return


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    out = {}
    for path in root.rglob("*"):
        st = path.stat()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


async def test_reader_matches_the_runtime_while_it_runs_and_after_it_stopped(
    tmp_path: Path,
) -> None:
    """A reader of a live store shows the Runtime's Workers, details and transcripts, follows
    new turns on refresh, and shows the same after the Runtime closed."""
    async with fs_runtime(tmp_path, checkpoint_interval_s=0.0) as rt:
        a = await rt.create_worker({"name": "a"})
        b = await rt.create_worker({"name": "b"})
        await talk(rt, a.worker_ref, "hello there")
        reader = FsStoreReader(tmp_path)
        await anyio.to_thread.run_sync(reader.refresh)
        assert reader.runtime_id == "local-rt"
        assert reader.writer_alive
        assert [w.worker_id for w in reader.list_workers().workers] == [a.worker_id, b.worker_id]
        await talk(rt, a.worker_ref, "second turn")
        await anyio.to_thread.run_sync(reader.refresh)
        live = await rt.read_transcript(a.worker_ref)
        seen = reader.read_transcript(a.worker_id)
        assert [i.content for i in seen.items] == [i.content for i in live.items]
        assert seen.items == live.items
        overview = (await rt.get_worker(a.worker_ref)).overview
        assert reader.get_worker(a.worker_id).overview == overview
    await anyio.to_thread.run_sync(reader.refresh)
    assert not reader.writer_alive
    after = reader.read_transcript(a.worker_id, start=1, limit=2)
    assert [i.sequence for i in after.items] == [2, 3]
    assert after.next_start == 3
    assert reader.list_workers(status="idle", limit=1).next_after == a.worker_id


async def test_reader_writes_nothing_and_takes_no_lock(tmp_path: Path) -> None:
    """Reading a store root changes no file in it, and a Runtime can open the root while a
    reader is in use."""
    async with fs_runtime(tmp_path) as rt:
        w = await rt.create_worker()
        await talk(rt, w.worker_ref, "one two")
    before = tree(tmp_path)
    reader = FsStoreReader(tmp_path)
    reader.refresh()
    reader.read_transcript(w.worker_id)
    assert tree(tmp_path) == before
    async with fs_runtime(tmp_path) as rt:
        await talk(rt, w.worker_ref, "three")
        reader.refresh()  # the writer reopened the store: the view is rebuilt
        assert reader.get_worker(w.worker_id).transcript_len == 4


async def test_reader_follows_a_store_a_live_process_is_appending_to(tmp_path: Path) -> None:
    """While another process appends to the store as fast as it can, every refresh succeeds
    and shows a gap-free transcript that only grows; after the process is killed the reader
    still reads everything it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path), "never", "inputs"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    worker_id = child.stdout.readline().split()[1]
    reader = FsStoreReader(tmp_path)
    seen = 0
    try:
        for _ in range(60):
            reader.refresh()
            page = reader.read_transcript(worker_id, start=max(0, seen - 1), limit=256)
            total = page.total_items
            assert total >= seen
            assert [i.sequence for i in page.items] == list(
                range(page.start + 1, page.start + 1 + len(page.items))
            )
            seen = total
            child.stdout.readline()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        rest = child.stdout.read()
        child.stdout.close()
    acked = [line for line in rest.splitlines() if line.startswith("ack ")]
    reader.refresh()
    assert seen > 0
    assert reader.get_worker(worker_id).transcript_len >= seen
    if acked:
        last = int(acked[-1].split()[1])
        assert reader.get_worker(worker_id).transcript_len >= last
    assert not reader.writer_alive


async def test_reader_reads_concurrently_with_an_in_process_writer(tmp_path: Path) -> None:
    """A reader refreshed from another thread while the Runtime runs turns never fails and
    never shows a gap in a transcript."""
    failures: list[BaseException] = []
    done = threading.Event()

    def read_loop(worker_id: str) -> None:
        reader = FsStoreReader(tmp_path)
        while not done.is_set():
            try:
                reader.refresh()
                page = reader.read_transcript(worker_id, limit=256)
                assert [i.sequence for i in page.items] == list(range(1, len(page.items) + 1))
            except BaseException as exc:
                failures.append(exc)
                return

    async with fs_runtime(tmp_path, checkpoint_interval_s=0.01) as rt:
        w = await rt.create_worker()
        thread = threading.Thread(target=read_loop, args=(w.worker_id,))
        thread.start()
        try:
            for i in range(40):
                await talk(rt, w.worker_ref, f"turn {i} words here")
        finally:
            done.set()
            thread.join()
    assert failures == []


async def test_reader_errors_are_typed_and_name_no_path(tmp_path: Path) -> None:
    """A directory that is no store, a corrupt record, an unknown Worker and bad paging
    arguments each get a typed error whose message names no path."""
    reader = FsStoreReader(tmp_path / "nothing")
    with pytest.raises(StoreCorrupt) as missing:
        reader.refresh()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "runtime.json").write_text("{not json")
    with pytest.raises(StoreCorrupt) as corrupt:
        FsStoreReader(tmp_path / "bad").refresh()
    for exc in (missing.value, corrupt.value):
        assert str(tmp_path) not in exc.message
    async with fs_runtime(tmp_path / "ok") as rt:
        await rt.create_worker()
    reader = FsStoreReader(tmp_path / "ok")
    reader.refresh()
    for hostile in ("../x", "a\x00b", "名前", "x" * 500):
        with pytest.raises(WorkerNotFound):
            reader.get_worker(hostile)
    with pytest.raises(InvalidInput):
        reader.list_workers(after="nope")
    with pytest.raises(InvalidInput):
        reader.list_workers(limit=0)
    os.chmod(tmp_path / "ok" / "runtime.json", 0o000)
    try:
        if os.geteuid() != 0:
            with pytest.raises(RuntimeUnavailable) as unreadable:
                FsStoreReader(tmp_path / "ok").refresh()
            assert str(tmp_path) not in str(unreadable.value)
    finally:
        os.chmod(tmp_path / "ok" / "runtime.json", 0o600)
