"""Benchmark of the Workspace Backend's routing overhead, against calling the runtime directly
in the same run.

- embedded source: input acks/s (c=8) and POST input → first output_delta latency through the
  Backend (``/api/runtimes/backend-internal/…``), against the same Runtime code served directly
  by a ``yoi-runtime`` process with the same store (fs, fsync batch). Target: overhead ≤ 1.5×.
- remote source: the same through the Backend to a registered ``yoi-runtime``, against that
  ``yoi-runtime`` called directly. Target: ≤ 2.5×.

Overhead is time per request (or latency) through the Backend ÷ directly. Echo, zero delay.
Run: ``uv run python bench/backend.py`` (about a minute). Client and servers share 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

from _load import TOKEN, Connection, pct, server  # noqa: E402
from _report import Row, report  # noqa: E402
from stream import END  # noqa: E402


async def acks_per_second(host: str, port: int, prefix: str, seconds: float) -> float:
    """Input acks/s at concurrency 8, each connection on its own Worker (on_busy enqueue)."""
    body = json.dumps({"content": "hello world", "on_busy": "enqueue"}).encode()
    count = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal count
        conn = await Connection.open(host, port)
        try:
            status, payload = await conn.request("POST", f"{prefix}/workers", b"{}")
            assert status == 201, payload
            path = f"{prefix}/workers/{json.loads(payload)['worker']['worker_id']}/input"
            while time.perf_counter() < deadline:
                status, payload = await conn.request("POST", path, body)
                assert status == 200, payload
                count += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(8)))
    return count / (time.perf_counter() - start)


async def first_delta(host: str, port: int, prefix: str, rounds: int) -> float:
    """Median ms from writing an input POST to receiving the first output_delta."""
    control = await Connection.open(host, port)
    stream = await Connection.open(host, port)
    status, payload = await control.request("POST", f"{prefix}/workers", b"{}")
    worker = json.loads(payload)["worker"]
    path = f"{prefix}/workers/{worker['worker_id']}"
    assert await stream.open_stream(f"{path}/events?cursor={worker['last_cursor']}") == 200
    body = json.dumps({"content": "hello world"}).encode()
    latencies: list[float] = []

    async def wait_delta(start: float) -> None:
        chunk = await stream.chunk()
        while b"event: output_delta" not in chunk:
            chunk = await stream.chunk()
        latencies.append(time.perf_counter() - start)
        while END not in chunk:
            chunk = await stream.chunk()

    try:
        for _ in range(rounds):
            start = time.perf_counter()
            status, _ = (
                await asyncio.gather(
                    control.request("POST", f"{path}/input", body), wait_delta(start)
                )
            )[0]
            assert status == 200
    finally:
        stream.close()
        control.close()
    return pct(latencies, 0.5)


async def main(seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime_cmd = [
            sys.executable, "-m", "worker_runtime.cli", "--bind", "127.0.0.1:0",
            "--token-env", "BENCH_TOKEN", "--log-level", "warning", "--runtime-id", "direct",
            "--store", "fs", "--data-dir", f"{tmp}/direct",
        ]  # fmt: skip
        backend_cmd = [
            sys.executable, "-m", "yoi_workspace_server.cli", "--bind", "127.0.0.1:0",
            "--data-dir", tmp, "--log-level", "warning",
        ]  # fmt: skip
        with server(runtime_cmd) as (rhost, rport), server(backend_cmd) as (bhost, bport):
            direct_acks = await acks_per_second(rhost, rport, "/v1", seconds)
            direct_lat = await first_delta(rhost, rport, "/v1", rounds)
            embedded = "/api/runtimes/backend-internal"
            emb_acks = await acks_per_second(bhost, bport, embedded, seconds)
            emb_lat = await first_delta(bhost, bport, embedded, rounds)
            conn = await Connection.open(bhost, bport)
            register = {"runtime_id": "direct", "base_url": f"http://{rhost}:{rport}"}
            status, payload = await conn.request(
                "POST", "/api/runtimes", json.dumps({**register, "token": TOKEN}).encode()
            )
            conn.close()
            assert status == 201, payload
            remote = "/api/runtimes/direct"
            rem_acks = await acks_per_second(bhost, bport, remote, seconds)
            rem_lat = await first_delta(bhost, bport, remote, rounds)
    rows = [
        Row("direct yoi-runtime: input acks/s, c=8", direct_acks, "req/s"),
        Row("direct yoi-runtime: first delta p50", direct_lat, "ms"),
        Row(
            "embedded: time per ack, c=8",
            1e3 / emb_acks,
            "ms",
            1e3 / direct_acks,
            "direct",
            "<= 1.5x",
            emb_acks * 1.5 >= direct_acks,
        ),
        Row(
            "embedded: first delta p50",
            emb_lat,
            "ms",
            direct_lat,
            "direct",
            "<= 1.5x",
            emb_lat <= 1.5 * direct_lat,
        ),
        Row(
            "remote: time per ack, c=8",
            1e3 / rem_acks,
            "ms",
            1e3 / direct_acks,
            "direct",
            "<= 2.5x",
            rem_acks * 2.5 >= direct_acks,
        ),
        Row(
            "remote: first delta p50",
            rem_lat,
            "ms",
            direct_lat,
            "direct",
            "<= 2.5x",
            rem_lat <= 2.5 * direct_lat,
        ),
    ]
    report("backend", rows)


if __name__ == "__main__":
    os.environ.setdefault("BENCH_TOKEN", TOKEN)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per acks measurement")
    parser.add_argument("--rounds", type=int, default=300, help="latency samples")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
