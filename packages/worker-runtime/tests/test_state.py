"""WorkerState: the Runtime's live state is the projection of its events, by construction."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from worker_runtime import Limits, Profile, Profiles, Runtime, RuntimeStore, WorkerRef
from worker_runtime.models import ProfileInfo
from worker_runtime.state import WorkerState, worker_detail, worker_summary
from worker_runtime.testing import ScriptedBackend, ScriptedTurn

pytestmark = pytest.mark.anyio

SCRIPTED = Profile(name="scripted", provider="scripted")


def _store(kind: str, root: Path) -> RuntimeStore | None:
    if kind == "memory":
        return None
    pytest.importorskip("orjson", reason="the fs-store extra is not installed")
    from worker_runtime.store.fs import FsRuntimeStore

    return FsRuntimeStore(root, fsync="never")


@pytest.mark.parametrize("kind", ["memory", "fs"])
async def test_live_state_equals_the_replay_of_the_workers_events(
    kind: str, tmp_path: Path
) -> None:
    """After turns that complete, fail, are cancelled or queued, a system input, an
    idempotency key and a stop, each Worker's detail equals the one built from a fresh
    WorkerState that applied the Worker's events from the log."""
    from worker_runtime import ProviderError

    scripted = ScriptedBackend(
        ScriptedTurn.reply("a", "b"),
        ScriptedTurn.fail(ProviderError("boom"), "x"),
        ScriptedTurn.hang_after("part"),
        ScriptedTurn.reply("queued"),
    )
    async with Runtime(
        runtime_id="rt-state",
        limits=Limits(shutdown_grace_s=0.2),
        profiles=Profiles([SCRIPTED]),
        backends={"scripted": scripted},
        store=_store(kind, tmp_path),
    ) as rt:
        one = await rt.create_worker({"profile": {"kind": "named", "name": "scripted"}})
        two = await rt.create_worker({"idempotency_key": "k1"})
        await rt.send_input(one.worker_id, {"kind": "system", "content": "ctx"})
        for content in ("first", "second"):
            await rt.send_input(one.worker_id, {"content": content, "on_busy": "enqueue"})
        await scripted.wait_started(2)
        with anyio.fail_after(5):
            while (await rt.get_worker(one.worker_id)).overview.turns.failed < 1:
                await anyio.sleep(0.01)
        await rt.send_input(one.worker_id, {"content": "hang", "idempotency_key": "i1"})
        await rt.send_input(one.worker_id, {"content": "after", "on_busy": "enqueue"})
        await scripted.wait_started(3)
        await rt.cancel(one.worker_id, reason="enough")
        with anyio.fail_after(5):
            while (await rt.get_worker(one.worker_id)).overview.turns.completed < 2:
                await anyio.sleep(0.01)
        await rt.send_input(two.worker_id, {"content": "hello"})
        await rt.stop_worker(two.worker_id, reason="done")

        for worker in (one, two):
            replayed = WorkerState(worker.worker_id)
            page = await rt.read_events(worker=worker.worker_id, limit=1000)
            for position, raw in enumerate(page.events, start=1):
                replayed.apply(
                    position, raw["kind"], raw["turn_id"], raw["cursor"], raw["at"], raw["data"]
                )
            live = await rt.get_worker(worker.worker_id)
            assert live == worker_detail(
                live.worker_ref,
                name=live.name,
                profile_info=live.profile_info,
                created_at=live.created_at,
                state=replayed,
            )
        assert live.status == "stopped"


def test_a_summary_falls_back_for_what_a_store_does_not_know() -> None:
    """A status no version knows reads as idle, and a Worker with no event of its own yet
    has the head cursor as its cursor and its creation time as its last activity."""
    ref = WorkerRef(runtime_id="rt", worker_id="w1")
    state = WorkerState("w1", status="paused")  # type: ignore[arg-type]
    summary = worker_summary(
        ref, name=None, profile="echo", created_at="t0", state=state, head_cursor="c0"
    )
    assert (summary.status, summary.last_cursor, summary.queued_inputs) == ("idle", "c0", 0)
    info = ProfileInfo(name="echo", provider="echo", model="echo")
    detail = worker_detail(
        ref, name="n", profile_info=info, created_at="t0", state=state, head_cursor="c0"
    )
    assert (detail.overview.last_activity_at, detail.overview.last_cursor) == ("t0", "c0")


def test_a_copy_does_not_share_its_lists() -> None:
    """Applying events to a copy leaves the original as it was."""
    state = WorkerState("w1")
    copy = state.copy()
    copy.apply(1, "input_accepted", "t1", "c1", "at", _queued("t1"))
    assert (len(copy.queue), len(state.queue), state.position) == (1, 0, 0)
    assert copy.to_json() == WorkerState.from_json(copy.to_json()).to_json()


def _queued(turn_id: str) -> dict[str, object]:
    return {
        "input_kind": "user",
        "content": "x",
        "transcript_sequence": 1,
        "queued": True,
        "idempotency": {"key": "k", "body": "b"},
    }
