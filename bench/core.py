"""Benchmark of the worker-runtime core, in-process (memory store, echo with zero delay).

Measures, each next to a baseline measured in the same run:

- echo turns/s across 100 Workers and on one Worker (baseline: raw anyio tasks that each
  append the same number of items and signal completion: the floor cost of a task per turn);
- events/s delivered to one subscriber (baseline: the same number of items through an anyio
  memory object stream, producer to consumer);
- deliveries/s with 100 subscribers (baseline: one producer fanning the items out to 100
  memory object streams);
- memory per idle Worker with 100,000 Workers (baseline: a plain dict of the Worker summary
  fields, the least a registry could keep).

Run: ``uv run python bench/core.py`` (``--quick`` for a smaller run). Never part of the tests.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import anyio
from anyio.abc import ObjectReceiveStream

sys.path.insert(0, str(Path(__file__).parent))

from _report import Row, report

from worker_runtime import Limits, Runtime, WorkerRef

TEXT = "hello world"


async def _drive(runtime: Runtime, ref: WorkerRef, turns: int) -> None:
    for _ in range(turns):
        ack = await runtime.send_input(ref, {"content": TEXT})
        async with runtime.subscribe(cursor=ack.cursor, worker=ref) as events:
            async for event in events:
                if event.kind == "turn_completed":
                    break


async def turns_per_second(workers: int, turns: int) -> float:
    limits = Limits(event_backlog=256)
    async with Runtime(runtime_id="bench", limits=limits) as runtime:
        refs = [(await runtime.create_worker()).worker_ref for _ in range(workers)]
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(_drive, runtime, ref, turns)
        elapsed = time.perf_counter() - start
    return workers * turns / elapsed


async def raw_tasks_per_second(count: int, items: int) -> float:
    """Baseline: a task per 'turn' that appends ``items`` items and signals completion."""
    sink: list[int] = []

    async def one(done: anyio.Event) -> None:
        for i in range(items):
            sink.append(i)
        done.set()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            done = anyio.Event()
            tg.start_soon(one, done)
            await done.wait()
    return count / (time.perf_counter() - start)


async def events_to_subscribers(subscribers: int, turns: int, words: int) -> tuple[float, int]:
    """Deliveries/s of every event of ``turns`` echo turns to ``subscribers`` subscribers."""
    text = " ".join(["w"] * words)
    async with Runtime(runtime_id="bench") as runtime:
        ref = (await runtime.create_worker()).worker_ref
        counts = [0] * subscribers
        subs = [runtime.subscribe(worker=ref) for _ in range(subscribers)]
        turn_done = anyio.Event()

        async def consume(index: int) -> None:
            nonlocal turn_done
            seen_turns = 0
            async for event in subs[index]:
                counts[index] += 1
                if event.kind == "turn_completed":
                    seen_turns += 1
                    if index == 0:
                        done, turn_done = turn_done, anyio.Event()
                        done.set()
                    if seen_turns == turns:
                        return

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(subscribers):
                tg.start_soon(consume, i)
            for _ in range(turns):
                waiting = turn_done
                await runtime.send_input(ref, {"content": text})
                await waiting.wait()
        elapsed = time.perf_counter() - start
        for sub in subs:
            await sub.aclose()
    total = sum(counts)
    return total / elapsed, total


async def raw_stream_deliveries(subscribers: int, items: int) -> float:
    """Baseline: one producer sends ``items`` items to each of ``subscribers`` memory object
    streams (buffer 512)."""
    streams = [anyio.create_memory_object_stream[int](512) for _ in range(subscribers)]
    received = 0

    async def consume(receive: ObjectReceiveStream[int]) -> None:
        nonlocal received
        async with receive:
            async for _ in receive:
                received += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _, receive in streams:
            tg.start_soon(consume, receive)
        for i in range(items):
            for send, _ in streams:
                await send.send(i)
        for send, _ in streams:
            await send.aclose()
    return received / (time.perf_counter() - start)


async def memory_per_worker(count: int) -> tuple[float, float]:
    """Bytes per idle Worker (tracemalloc), and the baseline bytes per plain summary dict."""
    gc.collect()
    tracemalloc.start()
    # limits.max_workers (default 10,000) would refuse the rest of the Workers.
    async with Runtime(runtime_id="bench", limits=Limits(max_workers=count)) as runtime:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            await runtime.create_worker()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        sample = (await runtime.list_workers(limit=1)).workers[0].model_dump(mode="json")
    tracemalloc.stop()
    per_worker = (after - before) / count

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    plain = [{**sample, "worker_id": f"wkr_{i:020x}"} for i in range(count)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del plain
    return per_worker, (after - before) / count


async def main(quick: bool) -> None:
    scale = 0.2 if quick else 1.0
    rows: list[Row] = []

    turns_each = max(5, int(50 * scale))
    many = await turns_per_second(100, turns_each)
    one = await turns_per_second(1, max(50, int(2000 * scale)))
    raw = await raw_tasks_per_second(max(1000, int(20000 * scale)), 6)
    rows.append(
        Row(
            "echo turns/s, 100 Workers",
            many,
            "turns/s",
            raw,
            "raw task/turn",
            ">= 5,000",
            many >= 5000,
        )
    )
    rows.append(Row("echo turns/s, 1 Worker", one, "turns/s", raw, "raw task/turn"))

    words = 1000
    turns = max(5, int(40 * scale))
    single, total = await events_to_subscribers(1, turns, words)
    raw_single = await raw_stream_deliveries(1, total)
    rows.append(
        Row(
            "events/s to 1 subscriber",
            single,
            "events/s",
            raw_single,
            "memory stream",
            ">= 100,000",
            single >= 100_000,
        )
    )
    fan, total = await events_to_subscribers(100, max(2, turns // 4), words)
    raw_fan = await raw_stream_deliveries(100, total // 100)
    rows.append(
        Row(
            "deliveries/s, 100 subscribers",
            fan,
            "events/s",
            raw_fan,
            "100 memory streams",
            ">= 200,000",
            fan >= 200_000,
        )
    )

    count = int(100_000 * scale)
    per_worker, plain = await memory_per_worker(count)
    rows.append(
        Row(
            f"memory per idle Worker ({count:,})",
            per_worker,
            "bytes",
            plain,
            "plain summary dict",
            "<= 8,192",
            per_worker <= 8192,
        )
    )
    report("core", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    anyio.run(main, parser.parse_args().quick)
