"""Crash soak of the fs store: a real ``yoi-runtime --store fs`` SIGKILLed again and again.

A seeded loop (the seed is printed) starts the Runtime on one data dir, drives a mixed load of
user (enqueued) and system inputs with idempotency keys on 20 Workers over HTTP, SIGKILLs it at
a random moment, restarts it, and checks after each restart that every acknowledged input is in
its Worker's transcript exactly once and in order. An input in flight at the kill (never
acknowledged) may or may not be there; its key makes a retry safe, which the soak does.

It reports kills, acknowledged inputs, lost, duplicated, Workers stuck ``running`` after the
queues drained, and recovery time: time from spawn to serving ``/healthz``, minus the same
binary's start on an empty store measured in the same run, p50 and p99 (nearest rank). The
process start alone (mostly imports) drifts with the machine's load by more than a recovery
costs, so each restart is paired with an empty-store start right before it, and a restart's
baseline is the median of the empty starts of the five restarts around it (its own and two on
either side). The raw restart and empty-start times are reported too.

Run: ``uv run python bench/crash_soak.py`` (100 kills, 1,000 Workers of which 20 under load;
about 10 minutes). ``--kills``, ``--workers``, ``--seed``; ``--quick`` is 20 kills, 100 Workers.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/http.py
sys.path.append(str(_HERE))

import httpx  # noqa: E402
from _report import Row, report  # noqa: E402

TOKEN = "soak-token-0b9d"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
PROFILES = 'default = "soak"\n[profiles.soak]\nprovider = "echo"\nchunk_delay_ms = 3\n'
CLI = [sys.executable, "-m", "worker_runtime.cli"]


class Child:
    """One ``yoi-runtime`` process; ``serving_s`` is spawn to the first 200 from /healthz."""

    def __init__(self, data: Path, work: Path) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                *CLI,
                *("--bind", "127.0.0.1:0", "--store", "fs", "--data-dir", str(data)),
                *("--token-file", str(work / "token"), "--profiles", str(work / "profiles.toml")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            raise SystemExit(f"yoi-runtime did not start: {line!r}")
        self.url = match.group(1)
        self.client = httpx.Client(base_url=self.url, headers=HEADERS, timeout=30)
        while self.client.get("/healthz").status_code != 200:
            time.sleep(0.001)
        self.serving_s = time.perf_counter() - started

    def kill(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def empty_start(work: Path, kill: int) -> float:
    """Spawn to serving of the same binary on a new, empty store."""
    child = Child(work / f"empty-{kill}", work)
    child.kill()
    shutil.rmtree(work / f"empty-{kill}", ignore_errors=True)
    return child.serving_s


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[math.ceil(len(ordered) * 0.99) - 1] * 1000


def transcript(c: httpx.Client, wid: str) -> list[str]:
    out: list[str] = []
    start: int | None = 0
    while start is not None:
        body = c.get(f"/v1/workers/{wid}/transcript", params={"start": start, "limit": 256})
        page = body.json()["transcript"]
        out.extend(i["content"] for i in page["items"] if i["role"] in ("user", "system"))
        start = page["next_start"]
    return out


def drive(url: str, wids: list[str], rng: random.Random, stop: threading.Event, state: Any) -> None:
    """Send keyed inputs to random Workers until ``stop``; record acks and the one in flight."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as c:
        while not stop.is_set():
            wid = rng.choice(wids)
            state["n"] += 1
            content = f"in-{state['n']}"
            kind = "user" if rng.random() < 0.6 else "system"
            body = {
                "content": content,
                "kind": kind,
                "on_busy": "enqueue",
                "idempotency_key": content,
            }
            state["in_flight"] = (wid, body)
            try:
                r = c.post(f"/v1/workers/{wid}/input", json=body)
            except httpx.HTTPError:
                return  # the process was killed under us
            if r.status_code == 200:
                state["acked"][wid].append(content)
                state["in_flight"] = None
            elif r.status_code != 409:  # a full queue is refused cleanly: nothing happened
                state["in_flight"] = None


def main(args: argparse.Namespace) -> None:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="crash-soak-"))
    (work / "token").write_text(TOKEN)
    (work / "profiles.toml").write_text(PROFILES)
    rows: list[Row] = []
    try:
        empty: list[float] = []
        restarts: list[float] = []
        data = work / "data"
        child = Child(data, work)
        wids = []
        for i in range(args.workers):
            r = child.client.post("/v1/workers", json={"name": f"w{i}", "idempotency_key": f"w{i}"})
            wids.append(r.json()["worker"]["worker_id"])
        loaded = wids[:20]
        state: dict[str, Any] = {"n": 0, "acked": {w: [] for w in loaded}, "in_flight": None}
        recoveries: list[float] = []
        lost = duplicated = stuck = retried = 0
        for kill in range(args.kills):
            stop = threading.Event()
            driver = threading.Thread(
                target=drive, args=(child.url, loaded, random.Random(rng.random()), stop, state)
            )
            driver.start()
            time.sleep(rng.uniform(0.05, 0.8))
            child.kill()
            stop.set()
            driver.join(timeout=30)
            empty.append(empty_start(work, kill))  # before the restart: nothing else runs
            child = Child(data, work)
            restarts.append(child.serving_s)
            if state["in_flight"] is not None:  # outcome unknown: retry with the same key
                wid, body = state["in_flight"]
                r = child.client.post(f"/v1/workers/{wid}/input", json=body)
                if r.status_code == 200:
                    state["acked"][wid].append(body["content"])
                    retried += 1
                state["in_flight"] = None
            for wid in loaded:
                got = transcript(child.client, wid)
                want = state["acked"][wid]
                lost += sum(1 for c in want if c not in got)
                duplicated += sum(1 for c in set(got) if got.count(c) > 1)
                if [c for c in got if c in set(want)] != [c for c in want if c in got]:
                    duplicated += 1  # out of order counts as wrong too
            print(
                f"kill {kill + 1}: restart {restarts[-1] * 1000:.0f} ms, "
                f"empty start {empty[-1] * 1000:.0f} ms",
                flush=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [
                w for w in loaded
                if child.client.get(f"/v1/workers/{w}").json()["worker"]["status"] == "running"
            ]  # fmt: skip
            if not running:
                break
            time.sleep(0.2)
        stuck = len(running)
        child.kill()
        acked = sum(len(v) for v in state["acked"].values())
        for i, restart in enumerate(restarts):
            recoveries.append(restart - statistics.median(empty[max(0, i - 2) : i + 3]))
        p50, p99 = percentiles(recoveries)
        restart_p50, restart_p99 = percentiles(restarts)
        empty_p50, empty_p99 = percentiles(empty)
        rows += [
            Row("seed", seed, ""),
            Row("kills (SIGKILL)", args.kills, ""),
            Row("Workers (20 under load)", args.workers, ""),
            Row("acknowledged inputs", acked, ""),
            Row("in-flight inputs retried with their key", retried, ""),
            Row("lost", lost, "", target="0", ok=lost == 0),
            Row("duplicated", duplicated, "", target="0", ok=duplicated == 0),
            Row("stuck running", stuck, "", target="0", ok=stuck == 0),
            Row("restart to /healthz p50", restart_p50, "ms"),
            Row("restart to /healthz p99", restart_p99, "ms"),
            Row("empty-store start to /healthz p50", empty_p50, "ms"),
            Row("empty-store start to /healthz p99", empty_p99, "ms"),
            Row("recovery p50 (minus empty start)", p50, "ms"),
            Row("recovery p99 (minus empty start)", p99, "ms", target="< 500", ok=p99 < 500),
        ]
    finally:
        if args.keep:
            shutil.copytree(work / "data", args.keep, symlinks=True)
        shutil.rmtree(work, ignore_errors=True)
    report("crash_soak", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="20 kills, 100 Workers")
    parser.add_argument("--keep", type=Path, help="copy the data dir here at the end (to profile)")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.kills, arguments.workers = 20, 100
    main(arguments)
