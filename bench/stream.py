"""Benchmark of the SSE event stream of a real ``yoi-runtime`` process (memory store, builtin
echo with zero delay).

In the same run, as the baseline, a minimal raw SSE endpoint (``bench/_raw_server.py``: one
pre-formatted event of the same size per ASGI message) under the same uvicorn settings. Both
are read by the same light client (asyncio streams, chunked decoding, events counted).

- events/s to 1 subscriber: one echo turn of N words (N output_delta events, plus four more)
  on a Worker stream, timed from the input POST to ``turn_completed``; the baseline streams N
  events from request to end. Target: at least 30% of the baseline.
- events/s in aggregate to 50 subscribers of the same Worker. Target: at least 30%.
- latency from the input POST to the first ``output_delta`` received. Targets: p50 < 3 ms,
  p99 < 15 ms.

Run: ``uv run python bench/stream.py`` (about a minute). On 2 cores the client competes with
the server for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

# The sibling bench/http.py must never shadow the standard library's http package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

from _load import Connection, pct, runtime_command, server  # noqa: E402
from _report import Row, report  # noqa: E402

END = b"event: turn_completed"


async def count_until(conn: Connection, end: bytes | None) -> tuple[int, float]:
    """Read a stream until a chunk containing ``end`` (or the body's end); returns (events,
    arrival time of the last)."""
    events = 0
    last = time.perf_counter()
    while True:
        chunk = await conn.chunk()
        if not chunk:
            return events, last
        events += chunk.count(b"event: ")
        last = time.perf_counter()
        if end is not None and end in chunk:
            return events, last


async def raw_fanout(host: str, port: int, subscribers: int, n: int) -> float:
    """Aggregate events/s of ``subscribers`` raw streams of ``n`` events each."""
    conns = [await Connection.open(host, port) for _ in range(subscribers)]
    start = time.perf_counter()
    try:
        for conn in conns:
            assert await conn.open_stream(f"/events?n={n}") == 200
        results = await asyncio.gather(*(count_until(c, None) for c in conns))
    finally:
        for conn in conns:
            conn.close()
    total = sum(events for events, _ in results)
    return total / (max(last for _, last in results) - start)


async def create_worker(conn: Connection) -> str:
    status, payload = await conn.request("POST", "/v1/workers", b"{}")
    assert status == 201, payload
    return str(json.loads(payload)["worker"]["worker_id"])


async def wait_subscribers(conn: Connection, count: int) -> None:
    while True:
        _, payload = await conn.request("GET", "/v1/runtime")
        if json.loads(payload)["runtime"]["subscribers"] >= count:
            return
        await asyncio.sleep(0.01)


async def runtime_fanout(host: str, port: int, subscribers: int, n: int) -> float:
    """Aggregate events/s delivered to ``subscribers`` streams of one Worker during an echo
    turn of ``n`` words, from the input POST to the last ``turn_completed``."""
    control = await Connection.open(host, port)
    worker_id = await create_worker(control)
    conns = [await Connection.open(host, port) for _ in range(subscribers)]
    try:
        for conn in conns:
            assert await conn.open_stream(f"/v1/workers/{worker_id}/events") == 200
        await wait_subscribers(control, subscribers)
        content = " ".join(f"w{i}" for i in range(n))
        body = json.dumps({"content": content}).encode()
        start = time.perf_counter()
        readers = asyncio.gather(*(count_until(c, END) for c in conns))
        status, payload = await control.request("POST", f"/v1/workers/{worker_id}/input", body)
        assert status == 200, payload
        results = await readers
    finally:
        for conn in [*conns, control]:
            conn.close()
    total = sum(events for events, _ in results)
    return total / (max(last for _, last in results) - start)


async def first_delta_latency(host: str, port: int, rounds: int) -> list[float]:
    """Seconds from writing an input POST to receiving the turn's first output_delta."""
    control = await Connection.open(host, port)
    stream = await Connection.open(host, port)
    worker_id = await create_worker(control)
    assert await stream.open_stream(f"/v1/workers/{worker_id}/events") == 200
    await wait_subscribers(control, 1)
    body = json.dumps({"content": "hello world"}).encode()
    path = f"/v1/workers/{worker_id}/input"
    latencies: list[float] = []

    async def first_delta(start: float) -> None:
        chunk = await stream.chunk()
        while b"event: output_delta" not in chunk:
            chunk = await stream.chunk()
        latencies.append(time.perf_counter() - start)
        if END not in chunk:  # the server may send a run of events as one chunk
            await count_until(stream, END)

    try:
        for _ in range(rounds):
            start = time.perf_counter()
            status, _ = (
                await asyncio.gather(control.request("POST", path, body), first_delta(start))
            )[0]
            assert status == 200
    finally:
        stream.close()
        control.close()
    return latencies


def best(values: list[float]) -> float:
    return max(values)


async def main(repeats: int, rounds: int) -> None:
    raw_cmd = [sys.executable, "-P", str(_HERE / "_raw_server.py")]
    runtime_cmd = runtime_command()
    one_n, fan_subs, fan_n = 20_000, 50, 2_000
    with server(raw_cmd) as (host, port):
        raw_one = best([await raw_fanout(host, port, 1, one_n) for _ in range(repeats)])
        raw_fan = best([await raw_fanout(host, port, fan_subs, fan_n) for _ in range(repeats)])
    with server(runtime_cmd) as (host, port):
        one = best([await runtime_fanout(host, port, 1, one_n) for _ in range(repeats)])
        fan = best([await runtime_fanout(host, port, fan_subs, fan_n) for _ in range(repeats)])
        latencies = await first_delta_latency(host, port, rounds)
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    rows = [
        Row(
            "events/s, 1 subscriber",
            one,
            "events/s",
            raw_one,
            "raw SSE",
            ">= 30% of baseline",
            one >= 0.3 * raw_one,
        ),
        Row(
            f"events/s, {fan_subs} subscribers (sum)",
            fan,
            "events/s",
            raw_fan,
            "raw SSE",
            ">= 30% of baseline",
            fan >= 0.3 * raw_fan,
        ),
        Row("POST input -> first output_delta, p50", p50, "ms", target="< 3 ms", ok=p50 < 3),
        Row("POST input -> first output_delta, p99", p99, "ms", target="< 15 ms", ok=p99 < 15),
    ]
    report("stream", rows)
    print(
        f"({one_n:,} events per turn for 1 subscriber, {fan_n:,} for {fan_subs}; best of "
        f"{repeats}; {rounds} latency rounds)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per throughput figure")
    parser.add_argument("--rounds", type=int, default=500, help="latency samples")
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.rounds))
