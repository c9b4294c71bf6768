"""Benchmark of the filesystem store (``fs-store`` extra).

Baselines measured in the same run, on the same disk: the raw append rate (``os.write`` of
event-sized lines) and the raw append+fsync rate (one fsync per line). Then:

- durable acknowledged events/s with ``--fsync batch`` and 32 concurrent writers (group
  commit; target >= 3x the raw append+fsync rate), and with ``always``;
- open time with 10,000 Workers and N events, and with 10 N events (target: < 2 s, flat),
  in a fresh process after the filled store was synced to disk: cold (page cache dropped, when
  the bench may) and warm;
- a transcript page of 50 from a Worker with many entries, and a resume from a cursor 100
  events before the head, each on a freshly opened store (so from disk), at two log sizes
  (target: < 5 ms, flat).

Run: ``uv run python bench/fs_store.py`` (about 10 minutes; ``--quick`` is smaller).
Data goes to a temporary directory under ``--dir`` (default: bench/results/tmp), removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from _report import Row, report

from worker_runtime import Limits, Runtime, WorkerRef
from worker_runtime.events import Event
from worker_runtime.store.fs import FsRuntimeStore

LINE = b'{"p":1,"c":"abcdefghijklmnop-1","k":"input_accepted","w":"wkr_0123456789abcdef0123",' + (
    b'"t":null,"a":"2026-11-22T10:00:00.000000Z","d":{"input_kind":"system","content":"x"}}\n'
)
LIMITS = Limits(max_list_workers=10_000, max_transcript_items=256)


def raw_append(directory: Path, count: int, fsync: bool) -> float:
    path = directory / ("raw-fsync.jsonl" if fsync else "raw.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, LINE)
        if fsync:
            os.fsync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return count / elapsed


async def durable_acks(directory: Path, mode: str, writers: int, per_writer: int) -> float:
    """Acknowledged events/s: ``writers`` tasks each send system inputs to their own Worker;
    each ack waits until its event is durable per ``mode``."""
    store = FsRuntimeStore(directory / f"acks-{mode}", fsync=mode)  # type: ignore[arg-type]
    async with Runtime(runtime_id="bench", store=store, limits=LIMITS) as rt:
        refs = [(await rt.create_worker()).worker_ref for _ in range(writers)]

        async def writer(ref: WorkerRef) -> None:
            for i in range(per_writer):
                await rt.send_input(ref, {"content": f"note {i}", "kind": "system"})

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(writer, ref)
        elapsed = time.perf_counter() - start
    return writers * per_writer / elapsed


async def fill(root: Path, workers: int, events: int, hot_entries: int = 0) -> tuple[str, str]:
    """Create ``workers`` Workers (through a Runtime), then about ``events`` events appended
    through the store's own append path in batches of 50,000 (with a checkpoint every 500,000
    events, as a long-running Runtime makes them), so that 10M events take minutes, not an
    hour. As in a real log, most events are streamed output (``output_delta``, spread over
    the Workers); every tenth is a system input to the first Worker, until it holds
    ``hot_entries`` transcript entries. Returns (first worker id, head cursor)."""
    store = FsRuntimeStore(root, fsync="never")
    async with Runtime(runtime_id="bench", store=store, limits=LIMITS) as rt:
        for _ in range(workers):
            await rt.create_worker()
    store = FsRuntimeStore(root, fsync="never")
    opened = await store.open(runtime_id="bench", limits=LIMITS)
    ids = [w.record.worker_id for w in opened.workers]
    hot_id = ids[0]
    sequence = opened.workers[0].state.transcript_len
    position = opened.head
    total = max(0, events - workers)
    at = "2026-12-06T00:00:00.000000Z"
    batch: list[Event] = []
    since_checkpoint = 0
    cursor = ""
    for i in range(total):
        position += 1
        cursor = f"{opened.incarnation}-{position:x}"
        if i % 10 == 0 and sequence < hot_entries:
            sequence += 1
            data: dict[str, Any] = {
                "input_kind": "system",
                "content": "hot entry",
                "transcript_sequence": sequence,
                "queued": False,
            }
            event = Event(position, cursor, "input_accepted", "bench", hot_id, None, at, data)
        else:
            worker_id = ids[i % len(ids)]
            data = {"text": "word "}
            event = Event(position, cursor, "output_delta", "bench", worker_id, "turn_x", at, data)
        batch.append(event)
        if len(batch) == 50_000 or i == total - 1:
            store.append_events(batch)
            store.flush()
            since_checkpoint += len(batch)
            batch = []
            if since_checkpoint >= 500_000:
                store.checkpoint()
                since_checkpoint = 0
    await store.close()
    return hot_id, cursor


async def open_time(root: Path) -> float:
    """Seconds to open the Runtime on ``root`` (store open and recovery included)."""
    start = time.perf_counter()
    async with Runtime(runtime_id="bench", store=FsRuntimeStore(root), limits=LIMITS) as rt:
        elapsed = time.perf_counter() - start
        await rt.summary()
    return elapsed


def drop_page_cache() -> bool:
    """Empty the OS page cache (root only), so an open reads from disk; False if not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("(page cache cannot be dropped here: cold opens are not measured)")
        return False
    return True


def open_time_fresh(root: Path) -> float:
    """The open time measured in a fresh process, as a restart is."""
    result = subprocess.run(
        [sys.executable, __file__, "--open-only", str(root)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


async def read_latencies(root: Path, worker_id: str, head: str) -> tuple[float, float]:
    """Median ms of a 50-entry transcript page (middle of the transcript) and of a resume
    from 100 events before the head, on a freshly opened store."""
    async with Runtime(runtime_id="bench", store=FsRuntimeStore(root), limits=LIMITS) as rt:
        ref = rt.ref(worker_id)
        total = (await rt.get_worker(ref)).transcript_len
        pages: list[float] = []
        for i in range(50):
            start = time.perf_counter()
            page = await rt.read_transcript(ref, start=(total // 2 + i * 997) % total, limit=50)
            pages.append(time.perf_counter() - start)
            assert page.items
        prefix, _, pos = head.rpartition("-")
        before = f"{prefix}-{int(pos, 16) - 100:x}"
        resumes: list[float] = []
        for _ in range(50):
            start = time.perf_counter()
            events = (await rt.read_events(cursor=before, limit=100)).events
            resumes.append(time.perf_counter() - start)
            assert len(events) == 100
    return statistics.median(pages) * 1000, statistics.median(resumes) * 1000


async def main(args: argparse.Namespace) -> None:
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fs-bench-", dir=base))
    quick = args.quick
    rows: list[Row] = []
    try:
        if args.opens_only:
            sizes = [int(n) for n in args.opens_only.split(",")]
            cache = Path(args.cache) if args.cache else None
            await opens(work, rows, args.workers, sizes, cache)
            return
        raw = raw_append(work, 200_000, fsync=False)
        raw_sync = raw_append(work, 300 if quick else 2000, fsync=True)
        rows.append(Row("raw append (no fsync)", raw, "lines/s"))
        rows.append(Row("raw append + fsync", raw_sync, "lines/s"))
        per_writer = 100 if quick else 500
        batch = await durable_acks(work, "batch", 32, per_writer)
        rows.append(
            Row(
                "durable acks, batch, 32 writers",
                batch,
                "events/s",
                raw_sync,
                "raw append+fsync",
                ">= 3x baseline",
                batch >= 3 * raw_sync,
            )
        )
        always = await durable_acks(work, "always", 32, per_writer // 2)
        rows.append(
            Row(
                "durable acks, always, 32 writers", always, "events/s", raw_sync, "raw append+fsync"
            )
        )
        never = await durable_acks(work, "never", 32, per_writer)
        rows.append(Row("acks, never, 32 writers", never, "events/s", raw, "raw append"))

        workers = 1000 if quick else 10_000
        small = 100_000 if quick else 1_000_000
        await opens(work, rows, workers, [small, small * 10])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        report("fs_store", rows)


async def opens(
    work: Path, rows: list[Row], workers: int, sizes: list[int], cache: Path | None = None
) -> None:
    """Open times (cold and warm, fresh process) and read latencies at each log size. With
    ``cache``, each filled store is kept there and reused by the next run."""
    for n in sizes:
        root = (cache or work) / f"open-{workers}-{n}"
        marker = root.with_suffix(".json")
        hot = n // 10
        filled = time.perf_counter()
        if cache is not None and marker.exists():
            worker_id, head = json.loads(marker.read_text())
        else:
            shutil.rmtree(root, ignore_errors=True)
            worker_id, head = await fill(root, workers, n, hot_entries=hot)
            if cache is not None:
                marker.write_text(json.dumps([worker_id, head]))
        # Let the OS write back the fill first: otherwise the open's own fsyncs wait for
        # gigabytes of someone else's dirty pages, which is not the store's open cost.
        os.sync()
        opened = open_time_fresh(root)
        label = f"open warm, {workers:,} Workers, {n:,} events"
        rows.append(Row(label, opened * 1000, "ms", target="< 2,000", ok=opened < 2))
        if drop_page_cache():
            cold = open_time_fresh(root)
            # The same-run baseline: the same store opened cold without its catalog, so from
            # two small files per Worker (as every open was before the catalog).
            (root / "catalog.jsonl").unlink()
            drop_page_cache()
            before = open_time_fresh(root)
            rows.append(
                Row(
                    f"open cold, {workers:,} Workers, {n:,} events",
                    cold * 1000,
                    "ms",
                    before * 1000,
                    "cold, no catalog",
                    "< 2,000",
                    cold < 2,
                )
            )
        page_ms, resume_ms = await read_latencies(root, worker_id, head)
        rows.append(
            Row(
                f"transcript page of 50 ({hot:,} entries)",
                page_ms,
                "ms",
                target="< 5",
                ok=page_ms < 5,
            )
        )
        rows.append(
            Row(
                f"resume 100 before head ({n:,} events)",
                resume_ms,
                "ms",
                target="< 5",
                ok=resume_ms < 5,
            )
        )
        fill_s = time.perf_counter() - filled
        print(f"({n:,} events: filled and measured in {fill_s:.0f} s)", flush=True)
        if cache is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--dir", default=str(Path(__file__).parent / "results" / "tmp"))
    parser.add_argument("--open-only", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--opens-only", metavar="N,N", help="only the open and read measures, at these sizes"
    )
    parser.add_argument("--workers", type=int, default=10_000, help="with --opens-only")
    parser.add_argument(
        "--cache", metavar="DIR", help="with --opens-only: keep the filled stores here, reuse them"
    )
    arguments = parser.parse_args()
    if arguments.open_only:
        print(anyio.run(open_time, Path(arguments.open_only)))
    else:
        anyio.run(main, arguments)
