"""The Workspace Backend as a real process (the smoke test): the CLI with a config file, the
embedded Runtime, a real ``yoi-runtime`` process as a remote, a local store, SIGTERM, and the
leak scan over every response.

Each behaviour is asserted in detail by the in-process unit tests: ``test_sources.py`` (each
source, errors, hostile ids, twin worker_ids, a live local store), ``test_streams.py``
(streams, resume across a remote's restart, ``runtime_shutdown``), ``test_registry.py``
(projections, persistence, caps) and ``test_config.py`` (the config file)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

RUNTIME_TOKEN = "remote-secret-token-7f3a9c"
PROVIDER_KEY = "sk-test-planted-provider-key-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], pattern: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": PROVIDER_KEY, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.search(pattern, line), (line, proc.stderr.read() if proc.poll() else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def backend(data: Path, port: int) -> Iterator[httpx.Client]:
    args = [
        sys.executable, "-m", "yoi_workspace_server.cli",
        "--bind", f"127.0.0.1:{port}", "--data-dir", str(data),
    ]  # fmt: skip
    with process(args, "listening on") as proc, Recorder(f"http://127.0.0.1:{port}") as client:
        client.proc = proc
        client.headers["Authorization"] = f"Bearer {browser_token(data)}"
        yield client


@contextmanager
def remote(data: Path, port: int, token_file: Path, profiles: Path) -> Iterator[Any]:
    args = [
        sys.executable, "-m", "worker_runtime.cli", "--runtime-id", "remote-a",
        "--bind", f"127.0.0.1:{port}", "--store", "fs", "--data-dir", str(data),
        "--token-file", str(token_file), "--profiles", str(profiles), "--shutdown-grace-s", "0.2",
    ]  # fmt: skip
    with process(args, "listening on") as proc:
        yield proc


def browser_token(data: Path) -> str:
    """The browser token the Backend generated into its data dir."""
    return (data / "backend.token").read_text(encoding="utf-8").strip()


class Recorder(httpx.Client):
    """An httpx client that keeps every response (headers and body) for the leak scan."""

    seen: list[str]
    proc: Any

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url=base_url, timeout=10)
        self.seen = []

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        self.seen.append(str(dict(response.headers)) + response.text)
        return response


def sse_events(client: httpx.Client, path: str, until: str, **params: str) -> list[dict[str, Any]]:
    """Read a Backend SSE stream until an event of kind ``until``."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", path, params=params) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                events.append(current)
                current = {}
                if events[-1]["data"]["kind"] == until:
                    return events
    return events


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return dict(body)


def _write_store(root: Path, runtime_id: str, words: str) -> str:
    """A store root left behind by a Runtime that has stopped: one Worker, one turn."""
    import anyio

    from worker_runtime import Runtime
    from worker_runtime.store.fs import FsRuntimeStore

    async def main() -> str:
        async with Runtime(runtime_id=runtime_id, store=FsRuntimeStore(root)) as rt:
            w = await rt.create_worker({"name": "old", "initial_input": {"content": words}})
            with anyio.fail_after(10):
                while (await rt.get_worker(w.worker_ref)).transcript_len < 2:
                    await anyio.sleep(0.01)
            return w.worker_id

    return anyio.run(main)


def test_the_backend_process(tmp_path: Path) -> None:
    """The CLI serves the embedded Runtime, a remote ``yoi-runtime`` process and a local store
    of its config: a turn on each live source streams to turn_completed with Backend cursors,
    the local store is read-only, ``/api/workers`` lists every source, SIGTERM with a remote's
    stream open ends it with runtime_shutdown and exits 0, and no response carries a token,
    the provider key, a path or the remote's address."""
    data, remote_data = tmp_path / "backend", tmp_path / "remote"
    token_file = tmp_path / "remote.token"
    token_file.write_text(RUNTIME_TOKEN)
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.slow]\nprovider = "echo"\nchunk_delay_ms = 150\n')
    old_wid = _write_store(tmp_path / "old", "old-rt", "from the old runtime")
    config = tmp_path / "backend.toml"
    config.write_text('[[local_store]]\nroot = "old"\ndisplay_name = "Old"\n')
    bport, rport = _free_port(), _free_port()
    remote_url = f"http://127.0.0.1:{rport}"
    args = [
        sys.executable, "-m", "yoi_workspace_server.cli", "--bind", f"127.0.0.1:{bport}",
        "--data-dir", str(data), "--config", str(config),
    ]  # fmt: skip
    with (
        remote(remote_data, rport, token_file, profiles),
        process(args, "listening on") as proc,
        Recorder(f"http://127.0.0.1:{bport}") as c,
    ):
        c.headers["Authorization"] = f"Bearer {browser_token(data)}"
        runtimes = {r["runtime_id"]: r for r in c.get("/api/runtimes").json()["runtimes"]}
        assert {k: r["kind"] for k, r in runtimes.items()} == {
            "backend-internal": "embedded",
            "old-rt": "local_compatibility",
        }
        base = "/api/runtimes/backend-internal"
        worker = c.post(f"{base}/workers", json={"name": "emb"}).json()["worker"]
        wid, cursor = worker["worker_id"], worker["last_cursor"]
        assert c.post(f"{base}/workers/{wid}/input", json={"content": "hello"}).is_success
        events = sse_events(c, f"{base}/workers/{wid}/events", "turn_completed", cursor=cursor)
        assert all(e["id"].startswith("b1.") for e in events)
        items = c.get(f"/api/runtimes/old-rt/workers/{old_wid}/transcript").json()
        assert [i["content"] for i in items["transcript"]["items"]] == ["from the old runtime"] * 2
        error(c.post("/api/runtimes/old-rt/workers", json={}), 501, "unsupported_operation")

        added = c.post(
            "/api/runtimes",
            json={"runtime_id": "remote-a", "base_url": remote_url, "token": RUNTIME_TOKEN},
        )
        assert added.json()["runtime"]["status"] == "running", added.text
        rbase = "/api/runtimes/remote-a"
        slow = {"profile": {"kind": "named", "name": "slow"}}
        remote_worker = c.post(f"{rbase}/workers", json=slow).json()["worker"]
        rwid, rcursor = remote_worker["worker_id"], remote_worker["last_cursor"]
        assert c.post(f"{rbase}/workers/{rwid}/input", json={"content": "a b"}).is_success
        events = sse_events(c, f"{rbase}/workers/{rwid}/events", "turn_completed", cursor=rcursor)
        assert events[-1]["id"].startswith("b1.")
        rows = c.get("/api/workers").json()
        assert {r["runtime_id"] for r in rows["workers"]} == {"backend-internal", "old-rt",
                                                              "remote-a"}  # fmt: skip

        with c.stream("GET", f"{rbase}/workers/{rwid}/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            proc.send_signal(signal.SIGTERM)
            rest = list(lines)
        assert any('"code":"runtime_shutdown"' in line for line in rest), rest
        assert proc.wait(timeout=20) == 0
        seen = c.seen

    secrets = [RUNTIME_TOKEN, PROVIDER_KEY, str(tmp_path), remote_url, f"127.0.0.1:{rport}"]
    secrets.append(browser_token(data))
    for text in seen:
        for secret in secrets:
            assert secret not in text, secret
