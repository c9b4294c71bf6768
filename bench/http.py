"""Benchmark of the REST command API of a real ``yoi-runtime`` process.

A light HTTP/1.1 keep-alive load client (asyncio streams; httpx is too slow to measure a fast
server) drives, in the same run:

- the baseline: a minimal raw ASGI app served by the same uvicorn settings
  (``bench/_raw_server.py``);
- POST input acks/s (builtin echo, zero delay, memory store) with p50 and p99, at
  concurrency 1, 8 and 32 (each connection talks to its own Worker, ``on_busy: enqueue``);
- create+input pairs/s at concurrency 8.

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
from pathlib import Path
from typing import Any

# This file is named http.py: keep bench/ off the front of sys.path so that it never shadows
# the standard library's http package (uvicorn and others import it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

from _load import Connection, pct, server  # noqa: E402
from _report import Row, report  # noqa: E402


async def load(
    host: str, port: int, concurrency: int, seconds: float, make_steps: Any
) -> tuple[float, list[float], int]:
    """Run ``concurrency`` connections for ``seconds``; each repeats the requests its
    ``make_steps(conn)`` coroutine issues. Returns (req/s, latencies in s, non-2xx count)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def timed(conn: Connection, method: str, path: str, body: bytes) -> bytes:
        nonlocal errors
        start = time.perf_counter()
        status, payload = await conn.request(method, path, body)
        latencies.append(time.perf_counter() - start)
        if status >= 300:
            errors += 1
        return payload

    async def worker() -> None:
        conn = await Connection.open(host, port)
        try:
            step = await make_steps(conn, timed)
            while time.perf_counter() < deadline:
                await step()
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, errors


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
    with server([sys.executable, "-P", str(here / "_raw_server.py")]) as (host, port):
        raw = {c: await load(host, port, c, seconds, baseline_steps) for c in (1, 8, 32)}
    runtime_cmd = [
        sys.executable, "-m", "worker_runtime.cli", "--bind", "127.0.0.1:0",
        "--token-env", "BENCH_TOKEN", "--log-level", "warning",
    ]  # fmt: skip
    with server(runtime_cmd) as (host, port):
        acks = {c: await load(host, port, c, seconds, input_steps) for c in (1, 8, 32)}
        pairs = await load(host, port, 8, seconds, pair_steps)
    for c in (1, 8, 32):
        rate, lat, errors = acks[c]
        base_rate, base_lat, _ = raw[c]
        target = ">= 25% of baseline, p99 < 10 ms" if c == 8 else ""
        ok = (rate >= 0.25 * base_rate and pct(lat, 0.99) < 10) if c == 8 else None
        rows.append(Row(f"input acks/s, c={c}", rate, "req/s", base_rate, "raw ASGI", target, ok))
        rows.append(Row(f"  p50, c={c}", pct(lat, 0.5), "ms", pct(base_lat, 0.5), "raw ASGI p50"))
        rows.append(Row(f"  p99, c={c}", pct(lat, 0.99), "ms", pct(base_lat, 0.99), "raw ASGI p99"))
        if errors:
            rows.append(Row(f"  non-2xx answers, c={c}", errors, "count"))
    rate, lat, errors = pairs
    rows.append(
        Row("create+input pairs/s, c=8", rate / 2, "pairs/s", raw[8][0] / 2, "raw ASGI req/s ÷ 2")
    )
    rows.append(Row("  p99 per request, c=8", pct(lat, 0.99), "ms"))
    report("http", rows)
    print(f"(median baseline latency c=1: {statistics.median(raw[1][1]) * 1000:.3f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    asyncio.run(main(parser.parse_args().seconds))
