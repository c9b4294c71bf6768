"""Benchmark of the REST command API of a real ``yoi-runtime`` process.

A light HTTP/1.1 keep-alive load client (asyncio streams; httpx is too slow to measure a fast
server) drives, in the same run:

- the baseline: a minimal raw ASGI app served by the same uvicorn settings
  (``bench/_raw_server.py``);
- POST input acks/s (builtin echo, zero delay, memory store) with p50 and p99, at
  concurrency 1, 8 and 32 (each connection talks to its own Worker, ``on_busy: enqueue``);
- create+input pairs/s at concurrency 8.

Both servers run side by side, and each concurrency is measured in alternating slices (the
baseline, then the Runtime, four times), so that both see the same machine state. Where
``/proc`` exists, each also reports the server's own CPU time per request, which leaves the
client's share of the cores out.

Targets: at concurrency 8, at least 25% of the baseline's req/s, and p99 < 10 ms.
Run: ``uv run python bench/http.py`` (``--seconds`` per measurement, default 4).
The server runs as a separate process; on 2 cores the client competes with it for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This file is named http.py: keep bench/ off the front of sys.path so that it never shadows
# the standard library's http package (uvicorn and others import it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

from _load import Connection, cpu_seconds, pct, runtime_command, server_process  # noqa: E402
from _report import Row, report  # noqa: E402

#: Slices of each measurement, alternating between the baseline and the Runtime.
SLICES = 4


@dataclass
class Sample:
    """Requests answered, wall time, latencies, non-2xx answers and the server's CPU time."""

    count: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu: float | None = 0.0

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_us(self) -> float | None:
        """The server's CPU time per request, in µs."""
        return self.cpu / self.count * 1e6 if self.cpu is not None and self.count else None

    def add(self, other: Sample) -> None:
        self.count += other.count
        self.elapsed += other.elapsed
        self.latencies += other.latencies
        self.errors += other.errors
        self.cpu = None if self.cpu is None or other.cpu is None else self.cpu + other.cpu


async def load(
    target: tuple[str, int, int], concurrency: int, seconds: float, make_steps: Any
) -> Sample:
    """Run ``concurrency`` connections for ``seconds`` against ``target`` (host, port, pid);
    each repeats the requests its ``make_steps(conn)`` coroutine issues."""
    host, port, pid = target
    sample = Sample()
    deadline = time.perf_counter() + seconds

    async def timed(conn: Connection, method: str, path: str, body: bytes) -> bytes:
        start = time.perf_counter()
        status, payload = await conn.request(method, path, body)
        sample.latencies.append(time.perf_counter() - start)
        if status >= 300:
            sample.errors += 1
        return payload

    async def worker() -> None:
        conn = await Connection.open(host, port)
        try:
            step = await make_steps(conn, timed)
            while time.perf_counter() < deadline:
                await step()
        finally:
            conn.close()

    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(pid)
    sample.count = len(sample.latencies)
    sample.cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return sample


async def alternated(
    raw: tuple[str, int, int],
    runtime: tuple[str, int, int],
    concurrency: int,
    seconds: float,
) -> tuple[Sample, Sample]:
    """The baseline and the input acks at ``concurrency``, measured in alternating slices
    (``SLICES`` of each), so that both see the same machine state and their ratio does not
    drift with it."""
    base, acks = Sample(), Sample()
    for _ in range(SLICES):
        base.add(await load(raw, concurrency, seconds / SLICES, baseline_steps))
        acks.add(await load(runtime, concurrency, seconds / SLICES, input_steps))
    return base, acks


async def baseline_steps(conn: Connection, timed: Any) -> Any:
    body = json.dumps({"content": "hello world", "on_busy": "enqueue"}).encode()

    async def step() -> None:
        await timed(conn, "POST", "/v1/workers/w/input", body)

    return step


async def input_steps(conn: Connection, timed: Any) -> Any:
    _, payload = await conn.request("POST", "/v1/workers", b"{}")
    worker_id = json.loads(payload)["worker"]["worker_id"]
    body = json.dumps({"content": "hello world", "on_busy": "enqueue"}).encode()
    path = f"/v1/workers/{worker_id}/input"

    async def step() -> None:
        await timed(conn, "POST", path, body)

    return step


async def pair_steps(conn: Connection, timed: Any) -> Any:
    body = json.dumps({"content": "hello world"}).encode()

    async def step() -> None:
        payload = await timed(conn, "POST", "/v1/workers", b"{}")
        worker_id = json.loads(payload)["worker"]["worker_id"]
        await timed(conn, "POST", f"/v1/workers/{worker_id}/input", body)

    return step


async def main(seconds: float) -> None:
    here = Path(__file__).parent
    rows: list[Row] = []
    raw_cmd = [sys.executable, "-P", str(here / "_raw_server.py")]
    runtime_cmd = runtime_command()
    with server_process(raw_cmd) as raw, server_process(runtime_cmd) as runtime:
        runs = {c: await alternated(raw, runtime, c, seconds) for c in (1, 8, 32)}
        pairs = await load(runtime, 8, seconds, pair_steps)
    for c in (1, 8, 32):
        base, acks = runs[c]
        lat, base_lat = acks.latencies, base.latencies
        target = ">= 25% of baseline, p99 < 10 ms" if c == 8 else ""
        ok = (acks.rate >= 0.25 * base.rate and pct(lat, 0.99) < 10) if c == 8 else None
        rows.append(
            Row(f"input acks/s, c={c}", acks.rate, "req/s", base.rate, "raw ASGI", target, ok)
        )
        rows.append(Row(f"  p50, c={c}", pct(lat, 0.5), "ms", pct(base_lat, 0.5), "raw ASGI p50"))
        rows.append(Row(f"  p99, c={c}", pct(lat, 0.99), "ms", pct(base_lat, 0.99), "raw ASGI p99"))
        if acks.cpu_us is not None and base.cpu_us is not None:
            # The server's own CPU per request: the client's share of the 2 cores left out.
            rows.append(
                Row(f"  server CPU per request, c={c}", acks.cpu_us, "µs", base.cpu_us, "raw ASGI")
            )
        if acks.errors:
            rows.append(Row(f"  non-2xx answers, c={c}", acks.errors, "count"))
    rows.append(
        Row(
            "create+input pairs/s, c=8",
            pairs.rate / 2,
            "pairs/s",
            runs[8][0].rate / 2,
            "raw ASGI req/s ÷ 2",
        )
    )
    rows.append(Row("  p99 per request, c=8", pct(pairs.latencies, 0.99), "ms"))
    report("http", rows)
    print(f"(median baseline latency c=1: {statistics.median(runs[1][0].latencies) * 1000:.3f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    asyncio.run(main(parser.parse_args().seconds))
