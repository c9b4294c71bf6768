"""Benchmark of the ``openai`` execution backend against the raw SDK, on the same local fake
OpenAI-compatible server in the same run (``bench/_fake_openai.py``, its own process).

- Cost per streamed delta: a reply of ``--deltas`` one-word deltas, read by the raw SDK
  (``AsyncOpenAI`` streaming chat completions, every chunk's text taken) and by the Runtime (a
  Worker on an ``openai`` profile: the input command, every ``output_delta`` through a
  subscription, up to ``turn_completed``), ``--replies`` of each in alternation; the ratio is
  the median over the pairs of a runtime reply and the raw reply just before it. Target: ≤
  1.2× the raw SDK's time per delta.
- First-delta latency added: a two-delta reply, the time to the first delta through the
  Runtime (from ``send_input`` to the subscriber's first ``output_delta``) minus the raw SDK's
  (from the ``create`` call to the first content chunk), medians over ``--rounds``, taken in
  alternation. Target: < 2 ms.

Run: ``uv run python bench/providers.py`` (about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

import openai  # noqa: E402
from _load import pct, server  # noqa: E402
from _report import Row, report  # noqa: E402

from worker_runtime import Profile, Profiles, Runtime  # noqa: E402

KEY_ENV = "BENCH_PROVIDER_KEY"


async def raw_sdk(client: openai.AsyncOpenAI, n: int) -> tuple[float, float]:
    """(seconds for the whole reply, seconds to the first content) with the raw SDK."""
    start = time.perf_counter()
    first = 0.0
    stream = await client.chat.completions.create(
        model=f"deltas-{n}",
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    count = 0
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
    assert count == n, count
    return time.perf_counter() - start, first


async def through_runtime(rt: Runtime, worker: object, n: int) -> tuple[float, float]:
    """The same through a Runtime Worker, observed by a subscriber."""
    ref = worker.worker_ref  # type: ignore[attr-defined]
    start = time.perf_counter()
    ack = await rt.send_input(ref, {"content": "go"})
    first = 0.0
    count = 0
    async with rt.subscribe(cursor=ack.cursor, worker=ref) as events:
        async for event in events:
            if event.kind == "output_delta":
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
            elif event.kind in ("turn_completed", "turn_failed"):
                assert event.kind == "turn_completed", event.data
                break
    assert count == n, count
    return time.perf_counter() - start, first


async def main(deltas: int, replies: int, rounds: int) -> None:
    os.environ[KEY_ENV] = "bench-key"
    with server([sys.executable, str(_HERE / "_fake_openai.py")]) as (host, port):
        base_url = f"http://{host}:{port}/v1"
        client = openai.AsyncOpenAI(api_key="bench-key", base_url=base_url, max_retries=0)
        profiles = [
            Profile(
                name=f"p{n}",
                provider="openai",
                model=f"deltas-{n}",
                base_url=base_url,
                api_key_env=KEY_ENV,
            )
            for n in (deltas, 2)
        ]
        async with Runtime(runtime_id="bench", profiles=Profiles(profiles)) as rt:

            async def fresh(n: int) -> object:
                # A new Worker per reply: its request carries one message, as the raw SDK's
                # does (a growing conversation would measure the SDK's request encoding).
                return await rt.create_worker({"profile": {"kind": "named", "name": f"p{n}"}})

            for _ in range(2):  # warm both paths (connections, code)
                await raw_sdk(client, deltas)
                await through_runtime(rt, await fresh(deltas), deltas)
            raw_times: list[float] = []
            rt_times: list[float] = []
            for _ in range(replies):  # alternate, so machine noise hits both alike
                gc.collect()  # neither reply pays for the other's garbage
                raw_times.append((await raw_sdk(client, deltas))[0])
                worker = await fresh(deltas)
                gc.collect()
                rt_times.append((await through_runtime(rt, worker, deltas))[0])
            raw_first: list[float] = []
            rt_first: list[float] = []
            for _ in range(rounds):
                raw_first.append((await raw_sdk(client, 2))[1])
                rt_first.append((await through_runtime(rt, await fresh(2), 2))[1])
        await client.close()
    # Medians over the replies: a garbage collection landing in one reply moves no figure.
    per_raw = pct(raw_times, 0.5) / deltas * 1e3
    per_rt = pct(rt_times, 0.5) / deltas * 1e3
    first_raw = pct(raw_first, 0.5)
    first_rt = pct(rt_first, 0.5)
    added = first_rt - first_raw
    # Each runtime reply against the raw reply just before it: pairs close in time share the
    # machine's state, which drifts by ±15% between runs here.
    paired = sorted(r / w for r, w in zip(rt_times, raw_times, strict=True))[len(rt_times) // 2]
    rows = [
        Row("raw SDK: time per delta (median reply)", per_raw, "us"),
        Row("runtime: time per delta (median reply)", per_rt, "us", per_raw, "raw SDK"),
        Row(
            "runtime / raw SDK per delta, median of pairs",
            paired,
            "x",
            target="<= 1.2x",
            ok=paired <= 1.2,
        ),
        Row("raw SDK: first delta p50", first_raw, "ms"),
        Row("runtime: first delta p50", first_rt, "ms", first_raw, "raw SDK"),
        Row("runtime: first-delta latency added", added, "ms", target="< 2 ms", ok=added < 2.0),
    ]
    report("providers", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=2000, help="deltas per long reply")
    parser.add_argument("--replies", type=int, default=21, help="long replies per path (>= 1)")
    parser.add_argument("--rounds", type=int, default=200, help="first-delta samples per path")
    args = parser.parse_args()
    asyncio.run(main(args.deltas, args.replies, args.rounds))
