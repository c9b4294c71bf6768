"""Concurrent commands on one Worker keep its state and event log consistent."""

from __future__ import annotations

import random
from collections import Counter

import anyio
import pytest

from worker_runtime import WorkerBusy, WorkerRuntimeError
from worker_runtime.testing import ScriptedBackend, ScriptedTurn

from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio

TERMINAL = {"turn_completed", "turn_failed", "turn_cancelled", "turn_interrupted"}


async def test_mixed_concurrent_commands_keep_every_invariant(open_runtime: OpenRuntime) -> None:
    """Under hundreds of interleaved inputs (reject and enqueue), system inputs and cancels,
    every started turn ends exactly once, turns never overlap, transcript sequences are
    contiguous, and the Worker ends idle with counters that match its events."""
    rng = random.Random(7)
    backend = ScriptedBackend(default=ScriptedTurn.reply("a ", "b ", "c", delay_s=0.0005))
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        ref = w.worker_ref

        async def actor(seed: int) -> None:
            local = random.Random(seed)
            for _ in range(30):
                choice = local.random()
                try:
                    if choice < 0.45:
                        mode = "enqueue" if local.random() < 0.5 else "reject"
                        await rt.send_input(ref, {"content": "hi", "on_busy": mode})
                    elif choice < 0.6:
                        await rt.send_input(ref, {"content": "note", "kind": "system"})
                    else:
                        await rt.cancel(ref)
                except WorkerBusy:
                    pass
                await anyio.sleep(local.random() * 0.002)

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(actor, rng.randrange(1 << 30))
        with anyio.fail_after(10):
            async with rt.subscribe(worker=ref) as tail:
                if (await rt.get_worker(ref)).status != "idle":
                    async for event in tail:
                        if event.kind in TERMINAL and (await rt.get_worker(ref)).status == "idle":
                            break

        events = (await rt.read_events(worker=ref, limit=1000)).events
        assert len(events) < 1000
        open_turn: str | None = None
        ended: Counter[str] = Counter()
        for event in events:
            if event["kind"] == "turn_started":
                assert open_turn is None, "two turns overlapped"
                open_turn = event["turn_id"]
            elif event["kind"] in TERMINAL:
                assert event["turn_id"] == open_turn
                ended[event["turn_id"]] += 1
                open_turn = None
        assert open_turn is None
        assert all(n == 1 for n in ended.values())

        detail = await rt.get_worker(ref)
        turns = detail.overview.turns
        assert turns.total == len(ended)
        assert turns.completed + turns.cancelled + turns.failed == turns.total
        assert detail.queued_inputs == 0
        page = await rt.read_transcript(ref, limit=256)
        sequences = [item.sequence for item in page.items]
        assert sequences == list(range(1, len(sequences) + 1))
        assert page.total_items == detail.transcript_len


async def test_commands_racing_a_stop_see_a_stopped_worker(open_runtime: OpenRuntime) -> None:
    """Inputs racing a stop are either accepted before it (and then discarded or cancelled)
    or refused as worker_stopped/worker_busy; none runs after worker_stopped."""
    backend = ScriptedBackend(default=ScriptedTurn.hang_after())
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        refused: list[str] = []

        async def send(i: int) -> None:
            try:
                await rt.send_input(w.worker_ref, {"content": f"{i}", "on_busy": "enqueue"})
            except WorkerRuntimeError as exc:
                refused.append(exc.code)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(send, i)
            tg.start_soon(rt.stop_worker, w.worker_ref)
            for i in range(10, 20):
                tg.start_soon(send, i)
        assert set(refused) <= {"worker_stopped", "worker_busy"}
        events = (await rt.read_events(worker=w.worker_ref, limit=1000)).events
        kinds = [e["kind"] for e in events]
        assert kinds[-1] == "worker_stopped"
        assert kinds.count("turn_started") == 1
