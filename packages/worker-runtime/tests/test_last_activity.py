"""A Worker summary's ``last_activity_at``: the ``at`` of the Worker's newest event, on both
stores, after a restart and in the read-only view of an fs-store root."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from worker_runtime import Limits, Runtime, WorkerRef

pytestmark = pytest.mark.anyio

HAVE_FS = importlib.util.find_spec("orjson") is not None
KINDS = ["memory", "fs"] if HAVE_FS else ["memory"]


def open_runtime(kind: str, root: Path) -> Runtime:
    store: Any = None
    if kind == "fs":
        from worker_runtime.store.fs import FsRuntimeStore

        store = FsRuntimeStore(root, fsync="never")
    return Runtime(runtime_id="rt-activity", store=store, limits=Limits(shutdown_grace_s=0.2))


async def newest_at(rt: Runtime, ref: WorkerRef) -> str:
    """The ``at`` of the Worker's newest event in the log."""
    cursor: str | None = None
    last = ""
    while True:
        page = await rt.read_events(cursor=cursor, worker=ref, limit=100)
        if not page.events:
            return last
        last = page.events[-1]["at"]
        cursor = page.next_cursor


async def summary_at(rt: Runtime, ref: WorkerRef) -> str:
    """``last_activity_at`` of the listing's row, checked against the detail's."""
    rows = [w for w in (await rt.list_workers()).workers if w.worker_id == ref.worker_id]
    detail = await rt.get_worker(ref)
    assert rows[0].last_activity_at == detail.last_activity_at
    assert detail.overview.last_activity_at == detail.last_activity_at
    return rows[0].last_activity_at


async def talk(rt: Runtime, ref: WorkerRef, text: str) -> None:
    ack = await rt.send_input(ref, {"content": text})
    async with rt.subscribe(cursor=ack.cursor, worker=ref) as events:
        async for event in events:
            if event.kind == "turn_completed":
                return


@pytest.mark.parametrize("kind", KINDS)
async def test_last_activity_is_the_newest_event_and_survives_a_restart(
    kind: str, tmp_path: Path
) -> None:
    """The summary's last_activity_at is the newest event's ``at`` (the creation's at first,
    then the turn's last event, another Worker's activity not counted), and an fs store gives
    the same value after a restart and in its read-only view."""
    async with open_runtime(kind, tmp_path) as rt:
        a = await rt.create_worker({"name": "a"})
        assert a.last_activity_at == await newest_at(rt, a.worker_ref)
        await talk(rt, a.worker_ref, "one two three")
        after_turn = await summary_at(rt, a.worker_ref)
        assert after_turn == await newest_at(rt, a.worker_ref)
        assert after_turn >= a.last_activity_at
        b = await rt.create_worker({"name": "b"})
        await talk(rt, b.worker_ref, "elsewhere")
        assert await summary_at(rt, a.worker_ref) == after_turn
        assert await summary_at(rt, b.worker_ref) == await newest_at(rt, b.worker_ref)
        b_at = await summary_at(rt, b.worker_ref)
    if kind != "fs":
        return
    async with open_runtime(kind, tmp_path) as rt:
        assert await summary_at(rt, a.worker_ref) == after_turn
        assert await summary_at(rt, b.worker_ref) == b_at
    from worker_runtime.store.fsread import FsStoreReader

    reader = FsStoreReader(tmp_path)
    reader.refresh()
    rows = {w.worker_id: w.last_activity_at for w in reader.list_workers().workers}
    assert rows == {a.worker_id: after_turn, b.worker_id: b_at}
    assert reader.get_worker(a.worker_id).last_activity_at == after_turn
