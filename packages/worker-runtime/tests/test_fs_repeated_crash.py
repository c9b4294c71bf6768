"""The fs store keeps every acknowledged command across repeated SIGKILLs of a real
``yoi-runtime --store fs`` process (issue 16: the second crash lost everything since the first)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
pytest.importorskip("orjson", reason="the fs-store extra is not installed")
pytest.importorskip("sse_starlette", reason="the event-stream extra is not installed")
httpx = pytest.importorskip("httpx")

TOKEN = "crash-token-5b1e"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
CLI = [sys.executable, "-m", "worker_runtime.cli"]


def token_args(token_file: Path) -> list[str]:
    return ["--token-file", str(token_file)]


@contextmanager
def fs_process(data: Path, token_file: Path) -> Iterator[tuple[Any, str]]:
    """Start ``yoi-runtime --store fs`` on a free port; yields (process, base_url)."""
    proc = subprocess.Popen(
        [
            *CLI,
            "--bind",
            "127.0.0.1:0",
            "--store",
            "fs",
            "--data-dir",
            str(data),
            *token_args(token_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def transcript(c: Any, wid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = c.get(f"/v1/workers/{wid}/transcript", params={"start": start, "limit": 100})
        body = page.json()["transcript"]
        items.extend(body["items"])
        start = body["next_start"]
    return items


def replay_from(url: str, wid: str, cursor: str, until: int) -> list[dict[str, Any]]:
    """Events of one Worker resumed from ``cursor``, read until ``until`` inputs were seen."""
    events: list[dict[str, Any]] = []
    inputs = 0
    with (
        httpx.Client(base_url=url, headers=HEADERS, timeout=10) as c,
        c.stream("GET", f"/v1/workers/{wid}/events", params={"cursor": cursor}) as resp,
    ):
        assert resp.status_code == 200
        kind = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind not in (None, "heartbeat"):
                events.append({"kind": kind, "data": line[6:]})
                if kind == "input_accepted":
                    inputs += 1
                    if inputs >= until:
                        break
    return events


def test_every_acknowledged_input_survives_three_sigkills_in_a_row(tmp_path: Path) -> None:
    """Inputs acknowledged before each of three SIGKILLs of a real process are all in the
    transcript afterwards, exactly once and in order, and a stream resumed from the first
    incarnation's cursor replays every one of them."""
    data = tmp_path / "data"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    acked: list[str] = []
    wid = ""
    first_cursor = ""
    for round_ in range(3):
        with (
            fs_process(data, token_file) as (proc, url),
            httpx.Client(base_url=url, headers=HEADERS, timeout=10) as c,
        ):
            if round_ == 0:
                created = c.post("/v1/workers", json={"name": "crashy"}).json()["worker"]
                wid = created["worker_id"]
                first_cursor = created["last_cursor"]
            else:
                contents = [
                    i["content"] for i in transcript(c, wid) if i["role"] in ("user", "system")
                ]
                assert contents == acked, f"after crash {round_}"
                assert c.get(f"/v1/workers/{wid}").json()["worker"]["status"] != "running"
            for i in range(20):
                kind = "system" if i % 3 == 0 else "user"
                content = f"r{round_} i{i}"
                r = c.post(
                    f"/v1/workers/{wid}/input",
                    json={"content": content, "kind": kind, "on_busy": "enqueue"},
                )
                assert r.status_code == 200, r.text
                acked.append(content)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    with (
        fs_process(data, token_file) as (_, url),
        httpx.Client(base_url=url, headers=HEADERS, timeout=10) as c,
    ):
        contents = [i["content"] for i in transcript(c, wid) if i["role"] in ("user", "system")]
        assert contents == acked
        deadline = time.monotonic() + 20
        while c.get(f"/v1/workers/{wid}").json()["worker"]["status"] != "idle":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        events = replay_from(url, wid, first_cursor, len(acked))
        accepted = [e["data"] for e in events if e["kind"] == "input_accepted"]
        assert len(accepted) == len(acked)
        for content, raw in zip(acked, accepted, strict=True):
            assert f'"{content}"' in raw
