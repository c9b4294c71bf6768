"""Benchmark of the terminal client ``yoi`` against a real ``yoi up``, with same-run baselines.

- startup: wall time of ``yoi --help`` and of ``yoi workers`` (a real Backend, a few Workers),
  median of 20 runs each, against ``python -c pass`` (the interpreter alone) in the same run.
  Targets: ``--help`` < 150 ms, ``workers`` < 300 ms.
- first delta: for one turn, the moment ``yoi send`` prints its first delta on stdout, against
  a bare HTTP client (a raw socket reading the same Worker's SSE stream in this process) seeing
  that same delta. The echo profile waits 100 ms before each word, so both are subscribed when
  it arrives; the difference is what the CLI adds (parse + print). Median over the rounds;
  target: at most +5 ms.

Run: ``uv run python bench/cli.py`` (about half a minute). Client and server share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

from _report import Row, report  # noqa: E402

YOI = str(Path(sys.executable).with_name("yoi"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wall(argv: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _bare_first_delta(
    port: int, token: str, path: str, cursor: str, out: list[float], ready: threading.Event
) -> None:
    """A raw-socket SSE reader: the perf_counter time it sees the first output_delta."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = (
            f"GET {path}?cursor={cursor} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        sock.sendall(request.encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        ready.set()
        while b"event: output_delta" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
        out.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p.toml").write_text('[profiles.slow]\nprovider = "echo"\nchunk_delay_ms = 100\n')
        port = _free_port()
        server = subprocess.Popen(
            [
                YOI,
                "up",
                "--bind",
                f"127.0.0.1:{port}",
                "--profiles",
                "p.toml",
                "--log-level",
                "warning",
            ],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()
            token = (root / ".yoi" / "backend.token").read_text().strip()
            for i in range(5):
                subprocess.run(
                    [YOI, "new", "--name", f"w{i}"], cwd=root, check=True, capture_output=True
                )
            python = _wall([sys.executable, "-c", "pass"], root, args.runs)
            help_ms = _wall([YOI, "--help"], root, args.runs)
            workers_ms = _wall([YOI, "workers"], root, args.runs)
            extra = []
            for i in range(args.rounds):
                made = subprocess.run(
                    [YOI, "new", "-p", "slow", "-n", f"d{i}", "--json"],
                    cwd=root,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                worker = json.loads(made.stdout)["worker"]
                path = f"/api/runtimes/backend-internal/workers/{worker['worker_id']}/events"
                seen: list[float] = []
                ready = threading.Event()
                bare = threading.Thread(
                    target=_bare_first_delta,
                    args=(port, token, path, worker["last_cursor"], seen, ready),
                )
                bare.start()
                ready.wait(10)
                send = subprocess.Popen(
                    [YOI, "send", f"d{i}", "alpha beta"],
                    cwd=root,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                assert send.stdout is not None
                os.read(send.stdout.fileno(), 1)
                printed = time.perf_counter()
                send.communicate()
                bare.join(10)
                if seen:
                    extra.append((printed - seen[0]) * 1000)
        finally:
            server.terminate()
            server.wait(30)
    added = statistics.median(extra)
    rows = [
        Row(
            "yoi --help (median of 20)",
            help_ms,
            "ms",
            python,
            "python -c pass",
            "< 150 ms",
            help_ms < 150,
        ),
        Row(
            "yoi workers (median of 20)",
            workers_ms,
            "ms",
            python,
            "python -c pass",
            "< 300 ms",
            workers_ms < 300,
        ),
        Row(
            "yoi send first delta, after the bare client",
            added,
            "ms",
            None,
            "",
            "<= +5 ms",
            added <= 5,
        ),
        Row("  (max over rounds)", max(extra), "ms"),
    ]
    report("cli", rows)


if __name__ == "__main__":
    main()
