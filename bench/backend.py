"""Benchmark of the Workspace Backend's routing overhead, against calling the runtime directly
in the same run.

- embedded source: input acks/s (c=8) and POST input → first output_delta latency through the
  Backend (``/api/runtimes/backend-internal/…``), against the same Runtime code served directly
  by a ``yoi-runtime`` process with the same store (fs, fsync batch). Target: overhead ≤ 1.5×.
  (``--store memory`` runs the direct runtime on the memory store instead: a stricter view of
  the remote hop, whose cost then stands against a cheaper command.)
- remote source: the same through the Backend to a registered ``yoi-runtime``, against that
  ``yoi-runtime`` called directly. Target: ≤ 2.5×.

Overhead is time per request (or latency) through the Backend ÷ directly. Echo, zero delay.
The three targets are measured in alternation (throughput in short slices, latency round by
round), so a change in machine load moves all three alike. Run: ``uv run python
bench/backend.py`` (about a minute). Client and servers share 2 cores.
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

from _load import TOKEN, Connection, pct, runtime_command, server  # noqa: E402
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


class DeltaProbe:
    """One Worker with a control connection and an open event stream: a round writes an
    input POST and times the arrival of the first output_delta."""

    def __init__(self, control: Connection, stream: Connection, path: str) -> None:
        self.control, self.stream, self.path = control, stream, path
        self.body = json.dumps({"content": "hello world"}).encode()
        self.latencies: list[float] = []

    @classmethod
    async def open(cls, host: str, port: int, prefix: str) -> DeltaProbe:
        control = await Connection.open(host, port)
        stream = await Connection.open(host, port)
        status, payload = await control.request("POST", f"{prefix}/workers", b"{}")
        assert status == 201, payload
        worker = json.loads(payload)["worker"]
        path = f"{prefix}/workers/{worker['worker_id']}"
        assert await stream.open_stream(f"{path}/events?cursor={worker['last_cursor']}") == 200
        return cls(control, stream, path)

    async def round(self) -> None:
        start = time.perf_counter()

        async def wait_delta() -> None:
            chunk = await self.stream.chunk()
            while b"event: output_delta" not in chunk:
                chunk = await self.stream.chunk()
            self.latencies.append(time.perf_counter() - start)
            while END not in chunk:
                chunk = await self.stream.chunk()

        post = self.control.request("POST", f"{self.path}/input", self.body)
        status, _ = (await asyncio.gather(post, wait_delta()))[0]
        assert status == 200

    def close(self) -> None:
        self.stream.close()
        self.control.close()


async def interleaved(
    targets: dict[str, tuple[str, int, str]], seconds: float, rounds: int
) -> dict[str, tuple[float, float]]:
    """Acks/s and first-delta p50 (ms) of each target, measured in alternation (short
    throughput slices in turn, then latency rounds in turn) so that every target sees the
    same machine state, and the ratios do not drift with it."""
    acks = dict.fromkeys(targets, 0.0)
    slices = 4
    for _ in range(slices):
        for name, target in targets.items():
            acks[name] += await acks_per_second(*target, seconds / slices) / slices
    probes = {name: await DeltaProbe.open(*target) for name, target in targets.items()}
    try:
        for _ in range(rounds):
            for probe in probes.values():
                await probe.round()
    finally:
        for probe in probes.values():
            probe.close()
    return {name: (acks[name], pct(probes[name].latencies, 0.5)) for name in targets}


async def main(seconds: float, rounds: int, store: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime_cmd = runtime_command("--runtime-id", "direct")
        runtime_cmd += ["--store", "fs", "--data-dir", f"{tmp}/direct"] if store == "fs" else []
        backend_cmd = [
            sys.executable, "-m", "yoi_workspace_server.cli", "--bind", "127.0.0.1:0",
            "--data-dir", tmp, "--log-level", "warning", "--token-env", "BENCH_TOKEN",
        ]  # fmt: skip
        with server(runtime_cmd) as (rhost, rport), server(backend_cmd) as (bhost, bport):
            conn = await Connection.open(bhost, bport)
            register = {"runtime_id": "direct", "base_url": f"http://{rhost}:{rport}"}
            status, payload = await conn.request(
                "POST", "/api/runtimes", json.dumps({**register, "token": TOKEN}).encode()
            )
            conn.close()
            assert status == 201, payload
            figures = await interleaved(
                {
                    "direct": (rhost, rport, "/v1"),
                    "embedded": (bhost, bport, "/api/runtimes/backend-internal"),
                    "remote": (bhost, bport, "/api/runtimes/direct"),
                },
                seconds,
                rounds,
            )
    (direct_acks, direct_lat), (emb_acks, emb_lat), (rem_acks, rem_lat) = figures.values()
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
    parser.add_argument("--seconds", type=float, default=4.0, help="acks measurement per target")
    parser.add_argument("--rounds", type=int, default=300, help="latency samples")
    parser.add_argument(
        "--store",
        choices=("fs", "memory"),
        default="fs",
        help="the direct runtime's store (fs: the same as the embedded Runtime's)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds, args.store))
