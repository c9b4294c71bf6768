"""The fs store keeps disk reads off the event loop, and reads a recovered history lazily."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import Limits, Profile, Profiles, Runtime
from worker_runtime.store._fsreads import StoreReads
from worker_runtime.store.fs import FsRuntimeStore
from worker_runtime.testing import EventCapture

pytestmark = pytest.mark.anyio

ECHO = Profile(name="e", provider="echo")
BUDGET = Profile(name="b", provider="echo", context_tokens=40)


def runtime(root: Path, store: FsRuntimeStore | None = None) -> Runtime:
    return Runtime(
        runtime_id="off-loop",
        store=store or FsRuntimeStore(root),
        profiles=Profiles([ECHO, BUDGET], default="e"),
        limits=Limits(shutdown_grace_s=0.1),
    )


class Hold:
    """A hook that holds a store read in its thread until the event loop, still serving,
    releases it (or 10 s pass: then the read was holding the loop itself)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self.outcomes: list[bool] = []

    def __call__(self) -> None:
        self.reached.set()
        self.outcomes.append(self.released.wait(10))

    async def serve_then_release(self, rt: Runtime, ref: object) -> None:
        while not self.reached.is_set():
            await anyio.sleep(0.001)
        # The loop serves a command while the read is held in its thread.
        await rt.send_input(ref, {"content": "meanwhile", "kind": "system"})  # type: ignore[arg-type]
        self.released.set()


async def test_event_reads_from_disk_run_off_the_loop(tmp_path: Path) -> None:
    """A cursor resumed from an earlier process and a subscription catching up read the log
    in a worker thread: while such a read is held, the loop accepts another command, and the
    read then returns exactly the events after the cursor."""
    async with runtime(tmp_path) as rt:
        w = await rt.create_worker()
        start = (await rt.get_worker(w.worker_ref)).last_cursor
        for i in range(5):
            await rt.send_input(w.worker_ref, {"content": f"note {i}", "kind": "system"})
        before = (await rt.read_events(cursor=start, worker=w.worker_ref, limit=100)).events
    store = FsRuntimeStore(tmp_path)
    async with runtime(tmp_path, store) as rt:
        other = await rt.create_worker()
        hold = Hold()
        store.failpoints.on("read.events", hold)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold.serve_then_release, rt, other.worker_ref)
            page = await rt.read_events(cursor=start, worker=w.worker_ref, limit=100)
        assert hold.outcomes
        assert all(hold.outcomes)
        assert page.events == before
        hold = Hold()
        store.failpoints.on("read.events", hold)
        live = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold.serve_then_release, rt, other.worker_ref)
            async with rt.subscribe(cursor=start, worker=w.worker_ref) as events:
                for _ in range(len(before)):
                    live.append((await events.__anext__()).to_dict())
        assert hold.outcomes
        assert all(hold.outcomes)
        assert live == before


async def test_a_recovered_history_is_read_once_by_the_first_turn_off_the_loop(
    tmp_path: Path,
) -> None:
    """Opening the store reads no conversation; the first turn after the restart reads it in
    a worker thread (the loop keeps serving meanwhile) and no later turn reads it again; the
    context is the whole conversation, as if the process had never stopped."""
    async with runtime(tmp_path) as rt:
        w = await rt.create_worker()
        other = await rt.create_worker()
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "one two"})
            await cap.wait_for("turn_completed")
        await rt.send_input(w.worker_ref, {"content": "ctx", "kind": "system"})
    store = FsRuntimeStore(tmp_path)
    reads: list[int] = []
    rt = runtime(tmp_path, store)
    async with rt:
        assert reads == []  # the open read no history
        hold = Hold()

        def counted() -> None:
            reads.append(1)
            hold()

        store.failpoints.on("read.history", counted)
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            async with anyio.create_task_group() as tg:
                tg.start_soon(hold.serve_then_release, rt, other.worker_ref)
                await rt.send_input(w.worker_ref, {"content": "three"})
            first = await cap.wait_for("turn_completed")
            await rt.send_input(w.worker_ref, {"content": "four"})
            second = await cap.wait_for("turn_completed", count=2)
        assert hold.outcomes == [True]
        assert reads == [1]
        # one two, its echo, ctx, three; then the same, three's echo and four.
        assert first.data["usage"]["input_tokens"] == 2 + 2 + 1 + 1
        assert second.data["usage"]["input_tokens"] == 2 + 2 + 1 + 1 + 1 + 1


async def test_a_budgeted_history_is_read_from_the_end_only(tmp_path: Path) -> None:
    """With a context budget, the first turn after a restart reads only the newest part of a
    long conversation, and its context is what the budget keeps of the whole."""
    async with runtime(tmp_path) as rt:
        w = await rt.create_worker({"profile": {"kind": "named", "name": "b"}})
        for i in range(400):
            await rt.send_input(w.worker_ref, {"content": f"note {i} a b c", "kind": "system"})
    store = FsRuntimeStore(tmp_path)
    read: list[int] = []
    original = StoreReads.history_upto

    def spy(self: StoreReads, mark: object, max_tokens: int | None) -> list[object]:
        out = original(self, mark, max_tokens)  # type: ignore[arg-type]
        read.append(len(out))
        return out  # type: ignore[return-value]

    rt = runtime(tmp_path, store)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StoreReads, "history_upto", spy)
        async with rt, EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "now"})
            done = await cap.wait_for("turn_completed")
    assert len(read) == 1
    assert 0 < read[0] < 400
    # 40 tokens keep the input (5) and the newest four notes (8 each): 4 x 5 words + 1.
    assert done.data["usage"]["input_tokens"] == 21


async def test_checkpoint_slices_are_written_off_the_loop(tmp_path: Path) -> None:
    """A checkpoint slice's fsyncs and snapshots are written in a worker thread: while one is
    held, the loop accepts another command; once released, the snapshot is on disk."""
    store = FsRuntimeStore(tmp_path, checkpoint_interval_s=0)
    async with runtime(tmp_path, store) as rt:
        w = await rt.create_worker()
        other = await rt.create_worker()
        hold = Hold()
        store.failpoints.on("checkpoint.slice", hold)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold.serve_then_release, rt, other.worker_ref)
            await rt.send_input(w.worker_ref, {"content": "snapshot me", "kind": "system"})
        store.failpoints.on("checkpoint.slice", None)
        assert hold.outcomes
        assert all(hold.outcomes)
    assert [p async for p in anyio.Path(tmp_path).glob("workers/*/state.json")]
