"""Benchmark of a huge request head against ``yoi-runtime``: the server's CPU time and another
client's worst ``/healthz`` latency while one client sends a 16 MiB or a 128 MiB header.

Measured against the same process with the head cap lifted (``--max-head-bytes`` 1 GiB: the
parser then buffers the whole head, as uvicorn's httptools path did before the cap), in the
same run. The uncapped 128 MiB case costs tens of seconds of CPU and is skipped unless
``--full``. Run: ``uv run python bench/hostile_heads.py`` (about 30 s). Client and server share
2 cores with other work, so compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402

sys.path.insert(0, str(_HERE))
from _report import Row, report  # noqa: E402

MiB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(*flags: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker_runtime.cli", "--bind", "127.0.0.1:0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "YOI_BENCH_TOKEN": "bench-token"},
    )
    assert proc.stdout is not None
    match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
    assert match
    return proc, match.group(1)


def attack(url: str, size: int) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=120)
    try:
        sock.sendall(b"GET /v1/runtime HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * (256 * 1024)
        sent = 0
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
        sock.sendall(b"\r\n\r\n")
        while sock.recv(65536):
            pass
    except OSError:
        pass  # refused: the server closed the connection
    finally:
        sock.close()


def measure(proc: subprocess.Popen[str], url: str, size: int) -> tuple[float, float]:
    """(server CPU seconds, worst /healthz latency in ms) during one attack."""
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get("/healthz")
        before = cpu_seconds(proc.pid)
        thread = threading.Thread(target=attack, args=(url, size))
        thread.start()
        worst = 0.0
        while thread.is_alive():
            t0 = time.perf_counter()
            client.get("/healthz")
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.002)
        thread.join()
        time.sleep(0.2)
        return cpu_seconds(proc.pid) - before, worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also the uncapped 128 MiB head")
    args = parser.parse_args()
    common = ("--token-env", "YOI_BENCH_TOKEN")
    capped, capped_url = start(*common)
    uncapped, uncapped_url = start(*common, "--max-head-bytes", str(1024 * MiB))
    rows: list[Row] = []
    try:
        for size in (16 * MiB, 128 * MiB):
            cpu, worst = measure(capped, capped_url, size)
            base_cpu = base_worst = None
            if size == 16 * MiB or args.full:
                base_cpu, base_worst = measure(uncapped, uncapped_url, size)
            label = f"{size // MiB} MiB head"
            rows.append(
                Row(
                    f"server CPU, {label}",
                    cpu * 1000,
                    "ms",
                    base_cpu and base_cpu * 1000,
                    "no head cap",
                    "< 100 ms",
                    cpu < 0.1,
                )
            )
            rows.append(
                Row(
                    f"worst /healthz, {label}",
                    worst,
                    "ms",
                    base_worst,
                    "no head cap",
                    "< 100 ms",
                    worst < 100,
                )
            )
    finally:
        for proc in (capped, uncapped):
            proc.terminate()
            proc.wait(timeout=30)
    report("hostile_heads", rows)


if __name__ == "__main__":
    main()
