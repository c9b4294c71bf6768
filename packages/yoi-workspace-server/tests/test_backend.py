"""The Workspace Backend as a real process: the embedded Runtime, a real yoi-runtime as a
remote source, errors, hostile ids, restarts and the leak scan."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

RUNTIME_TOKEN = "remote-secret-token-7f3a9c"
PROVIDER_KEY = "sk-test-planted-provider-key-42"
DEAD_TOKEN = "dead-runtime-secret-token-99"


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


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


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


def test_the_backend_end_to_end(tmp_path: Path) -> None:
    """The embedded Runtime and a real remote yoi-runtime behind one API: every operation,
    errors passed through 1:1, the remote's outage and recovery, event resume across the
    remote's restart, hostile ids, a Backend restart, and no path, URL, token or provider key
    in any response."""
    data = tmp_path / "backend"
    remote_data = tmp_path / "remote"
    token_file = tmp_path / "remote.token"
    token_file.write_text(RUNTIME_TOKEN)
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.slow]\nprovider = "echo"\nchunk_delay_ms = 150\n')
    bport, rport = _free_port(), _free_port()
    remote_url = f"http://127.0.0.1:{rport}"
    seen: list[str] = []

    with remote(remote_data, rport, token_file, profiles) as remote_proc, backend(data, bport) as c:
        # -- the embedded source --------------------------------------------------------
        runtimes = c.get("/api/runtimes").json()["runtimes"]
        assert [r["runtime_id"] for r in runtimes] == ["backend-internal"]
        embedded = runtimes[0]
        assert embedded["kind"] == "embedded"
        assert embedded["status"] == "running"
        assert all(embedded["capabilities"].values())
        assert all(d["code"].startswith("embedded.") for d in embedded["diagnostics"])
        assert embedded["counts"] == {"workers": 0, "idle": 0, "running": 0, "stopped": 0}
        base = "/api/runtimes/backend-internal"
        created = c.post(f"{base}/workers", json={"name": "emb"})
        assert created.status_code == 201
        wid = created.json()["worker"]["worker_id"]
        cursor = created.json()["worker"]["last_cursor"]
        assert cursor.startswith("b1.")
        assert c.get(base).json()["runtime"]["counts"]["workers"] == 1
        ack = c.post(f"{base}/workers/{wid}/input", json={"content": "hello backend"})
        assert ack.status_code == 200
        events = sse_events(c, f"{base}/workers/{wid}/events", "turn_completed", cursor=cursor)
        deltas = [e["data"]["data"]["text"] for e in events if e["data"]["kind"] == "output_delta"]
        assert "".join(deltas) == "hello backend"
        assert all(e["id"].startswith("b1.") for e in events)
        page = c.get(f"{base}/workers/{wid}/transcript").json()["transcript"]
        assert [i["content"] for i in page["items"]] == ["hello backend", "hello backend"]
        assert c.get(f"{base}/workers").json()["workers"][0]["runtime_id"] == "backend-internal"
        assert c.post(f"{base}/workers/{wid}/cancel", json={}).status_code == 200
        assert c.post(f"{base}/workers/{wid}/stop", json={}).status_code == 200
        error(c.post(f"{base}/workers/{wid}/input", json={"content": "x"}), 409, "worker_stopped")
        error(c.delete(base), 501, "unsupported_operation")

        # -- hostile ids and bad input ---------------------------------------------------
        error(c.get("/api/runtimes/nope/workers"), 404, "runtime_not_found")
        error(c.get(f"{base}/workers/nope"), 404, "worker_not_found")
        for bad in ("..%2Fx", "%00", "ü" * 300):
            assert c.get(f"/api/runtimes/{bad}/workers").status_code in (400, 404)
            assert c.get(f"{base}/workers/{bad}").status_code in (400, 404)
        as_json = {"content-type": "application/json"}
        error(c.post(f"{base}/workers", content=b"{nope", headers=as_json), 400, "invalid_input")
        error(
            c.get(f"{base}/workers/{wid}/events", params={"cursor": "zz"}),
            400,
            "cursor_malformed",
        )
        error(
            c.post("/api/runtimes", json={"runtime_id": "x", "base_url": "ftp://h"}),
            400,
            "invalid_input",
        )

        # -- a remote source -------------------------------------------------------------
        bad_token = c.post(
            "/api/runtimes",
            json={"runtime_id": "remote-bad", "base_url": remote_url, "token": "wrong"},
        )
        assert bad_token.status_code == 201
        assert bad_token.json()["runtime"]["status"] == "unavailable"
        error(c.get("/api/runtimes/remote-bad/workers"), 503, "runtime_unavailable")
        assert c.delete("/api/runtimes/remote-bad").status_code == 200
        added = c.post(
            "/api/runtimes",
            json={"runtime_id": "remote-a", "base_url": remote_url, "token": RUNTIME_TOKEN},
        )
        assert added.status_code == 201, added.text
        assert added.json()["runtime"]["status"] == "running"
        assert added.json()["runtime"]["counts"]["workers"] == 0
        error(
            c.post("/api/runtimes", json={"runtime_id": "remote-a", "base_url": remote_url}),
            409,
            "runtime_exists",
        )
        rbase = "/api/runtimes/remote-a"
        slow = {"profile": {"kind": "named", "name": "slow"}}
        rwid = c.post(f"{rbase}/workers", json=slow).json()["worker"]["worker_id"]
        rcursor = c.get(f"{rbase}/workers/{rwid}").json()["worker"]["last_cursor"]
        assert c.post(f"{rbase}/workers/{rwid}/input", json={"content": "a b c"}).status_code == 200
        busy = error(
            c.post(f"{rbase}/workers/{rwid}/input", json={"content": "d"}), 409, "worker_busy"
        )
        assert busy["details"]["active_turn_id"]
        events = sse_events(c, f"{rbase}/workers/{rwid}/events", "turn_completed", cursor=rcursor)
        assert [e["data"]["kind"] for e in events][-1] == "turn_completed"
        last = events[-1]["id"]
        rows = c.get("/api/workers").json()["workers"]
        assert {r["runtime_id"] for r in rows} == {"backend-internal", "remote-a"}

        # -- the remote goes down: only its rows are unavailable ------------------------
        remote_proc.kill()
        remote_proc.wait()
        wait_for(lambda: c.get(rbase).json()["runtime"]["status"] == "unavailable")
        down = error(c.get(f"{rbase}/workers"), 503, "runtime_unavailable")
        assert down["details"]["reason"] in ("unreachable", "timeout")
        everything = c.get("/api/workers").json()
        assert {r["runtime_id"] for r in everything["workers"]} == {"backend-internal"}
        assert everything["diagnostics"][0]["runtime_id"] == "remote-a"
        assert c.get(f"{base}/workers").status_code == 200
        seen += c.seen

    # -- the remote comes back; the Backend restarts and remembers it ---------------------
    with remote(remote_data, rport, token_file, profiles), backend(data, bport) as c:
        wait_for(lambda: c.get(rbase).json()["runtime"]["status"] == "running")
        assert c.get(f"{base}/workers/{wid}").json()["worker"]["status"] == "stopped"
        assert c.post(f"{rbase}/workers/{rwid}/input", json={"content": "again"}).status_code == 200
        resumed = sse_events(c, f"{rbase}/workers/{rwid}/events", "turn_completed", cursor=last)
        kinds = [e["data"]["kind"] for e in resumed]
        assert kinds[0] == "input_accepted"
        assert kinds[-1] == "turn_completed"
        seen += c.seen
        # Removing a remote with a stream open ends that stream with runtime_shutdown.
        with c.stream("GET", f"{rbase}/workers/{rwid}/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            with httpx.Client(base_url=str(c.base_url), headers=c.headers) as other:
                assert other.delete(rbase).status_code == 200
            rest = list(lines)
        assert any('"code":"runtime_shutdown"' in line for line in rest), rest
        error(c.get(rbase), 404, "runtime_not_found")
        again = {"runtime_id": "remote-a", "base_url": remote_url, "token": RUNTIME_TOKEN}
        assert c.post("/api/runtimes", json=again).status_code == 201
        # SIGTERM with a remote's stream open: the browser's stream ends with runtime_shutdown.
        with c.stream("GET", f"{rbase}/workers/{rwid}/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            c.proc.send_signal(signal.SIGTERM)
            rest = list(lines)
        assert any('"code":"runtime_shutdown"' in line for line in rest), rest
        assert c.proc.wait(timeout=20) == 0

    secrets = [RUNTIME_TOKEN, PROVIDER_KEY, str(tmp_path), remote_url, f"127.0.0.1:{rport}"]
    secrets.append(browser_token(data))
    for text in seen:
        for secret in secrets:
            assert secret not in text, secret


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


def test_local_stores_are_read_only_and_same_worker_ids_route_apart(tmp_path: Path) -> None:
    """Local store roots appear as read-only local_compatibility sources (a left-behind root
    and one a live process appends to); every command on them is unsupported_operation; a
    root whose runtime is served live is not shown; a remote and a local store holding the
    same worker_id are routed apart; and no store path, URL or token leaks."""
    old_root, twin_root, live_root = tmp_path / "old", tmp_path / "twin", tmp_path / "live"
    wid = _write_store(old_root, "old-rt", "from the old runtime")
    # A second runtime holding the same worker_id: a copy of the root under another id.
    subprocess.run(["cp", "-r", str(old_root), str(twin_root)], check=True)
    record = json.loads((twin_root / "runtime.json").read_text())
    (twin_root / "runtime.json").write_text(json.dumps({**record, "runtime_id": "twin-rt"}))
    token_file = tmp_path / "remote.token"
    token_file.write_text(RUNTIME_TOKEN)
    data = tmp_path / "backend"
    config = tmp_path / "backend.toml"
    config.write_text(
        f'[[local_store]]\nroot = "old"\ndisplay_name = "Old"\n'
        f'[[local_store]]\nroot = "{data / "runtime"}"\n'
        f'[[local_store]]\nroot = "missing"\n'
    )
    bport, tport, lport = _free_port(), _free_port(), _free_port()
    twin_url, live_url = f"http://127.0.0.1:{tport}", f"http://127.0.0.1:{lport}"
    dead_url = f"http://127.0.0.1:{_free_port()}"
    twin_args = [
        sys.executable, "-m", "worker_runtime.cli", "--runtime-id", "twin-rt",
        "--bind", f"127.0.0.1:{tport}", "--store", "fs", "--data-dir", str(twin_root),
        "--token-file", str(token_file),
    ]  # fmt: skip
    live_args = [
        sys.executable, "-m", "worker_runtime.cli", "--runtime-id", "live-rt",
        "--bind", f"127.0.0.1:{lport}", "--store", "fs", "--data-dir", str(live_root),
        "--token-file", str(token_file),
    ]  # fmt: skip
    backend_args = [
        sys.executable, "-m", "yoi_workspace_server.cli", "--bind", f"127.0.0.1:{bport}",
        "--data-dir", str(data), "--config", str(config), "--local-store", str(live_root),
    ]  # fmt: skip
    auth = {"Authorization": f"Bearer {RUNTIME_TOKEN}"}
    with (
        process(twin_args, "listening on"),
        process(live_args, "listening on"),
        httpx.Client(base_url=live_url, headers=auth) as live,
    ):
        live_wid = live.post("/v1/workers", json={"name": "busy"}).json()["worker"]["worker_id"]
        with process(backend_args, "listening on"), Recorder(f"http://127.0.0.1:{bport}") as c:
            c.headers["Authorization"] = f"Bearer {browser_token(data)}"
            runtimes = {r["runtime_id"]: r for r in c.get("/api/runtimes").json()["runtimes"]}
            # The embedded root is served live, so it is not projected; "missing" is skipped.
            assert set(runtimes) == {"backend-internal", "old-rt", "live-rt"}
            old = runtimes["old-rt"]
            assert old["kind"] == "local_compatibility"
            assert old["display_name"] == "Old"
            assert old["status"] == "stopped"
            assert old["counts"] == {"workers": 1, "idle": 1, "running": 0, "stopped": 0}
            assert old["capabilities"] == {
                "can_create": False, "can_input": False, "can_stop": False,
                "can_cancel": False, "can_read_transcript": True, "can_stream_events": False,
            }  # fmt: skip
            assert all(d["code"].startswith("local.") for d in old["diagnostics"])
            assert runtimes["live-rt"]["status"] == "running"

            obase = "/api/runtimes/old-rt"
            detail = c.get(f"{obase}/workers/{wid}").json()["worker"]
            assert detail["name"] == "old"
            assert detail["last_cursor"].startswith("b1.")
            items = c.get(f"{obase}/workers/{wid}/transcript").json()["transcript"]["items"]
            assert [i["content"] for i in items] == ["from the old runtime"] * 2
            for method, path, body in [
                ("POST", f"{obase}/workers", {}),
                ("POST", f"{obase}/workers/{wid}/input", {"content": "x"}),
                ("POST", f"{obase}/workers/{wid}/stop", {}),
                ("POST", f"{obase}/workers/{wid}/cancel", {}),
                ("GET", f"{obase}/workers/{wid}/events", None),
                ("DELETE", obase, None),
            ]:
                error(c.request(method, path, json=body), 501, "unsupported_operation")
            error(c.get(f"{obase}/workers/nope"), 404, "worker_not_found")
            error(c.get(f"{obase}/workers", params={"after": "nope"}), 400, "invalid_input")

            # The same worker_id in a live remote: commands reach the remote only.
            twin = {"runtime_id": "twin-rt", "base_url": twin_url, "token": RUNTIME_TOKEN}
            assert c.post("/api/runtimes", json=twin).status_code == 201
            tbase = "/api/runtimes/twin-rt"
            ack = c.post(f"{tbase}/workers/{wid}/input", json={"content": "only the twin"})
            assert ack.status_code == 200, ack.text
            wait_for(
                lambda: c.get(f"{tbase}/workers/{wid}").json()["worker"]["transcript_len"] == 4
            )
            assert c.get(f"{obase}/workers/{wid}").json()["worker"]["transcript_len"] == 2
            rows = c.get("/api/workers").json()["workers"]
            assert sorted(r["runtime_id"] for r in rows if r["worker_id"] == wid) == [
                "old-rt",
                "twin-rt",
            ]
            error(
                c.get(
                    f"{tbase}/workers/{wid}/events",
                    params={"cursor": detail["last_cursor"]},  # old-rt's cursor
                ),
                400,
                "cursor_unknown",
            )

            # The live store: the projection follows what its process appends.
            def live_idle() -> bool:
                worker = live.get(f"/v1/workers/{live_wid}").json()["worker"]
                return bool(worker["status"] == "idle")

            lbase = f"/api/runtimes/live-rt/workers/{live_wid}"
            for i in range(5):
                sent = live.post(f"/v1/workers/{live_wid}/input", json={"content": f"t {i}"})
                assert sent.status_code == 200, sent.text
                wait_for(live_idle)
            wait_for(lambda: c.get(lbase).json()["worker"]["transcript_len"] == 10, timeout=10)
            page = c.get(f"{lbase}/transcript", params={"start": 8}).json()["transcript"]
            assert [i["content"] for i in page["items"]] == ["t 4", "t 4"]
            error(c.post(f"{lbase}/input", json={"content": "no"}), 501, "unsupported_operation")
            error(c.get(f"{lbase}/transcript", params={"start": -1}), 400, "invalid_input")

            # Registration: hostile ids are refused, an unreachable remote echoes nothing.
            for hostile in ("../x", "a\x00b", "名前", "x" * 300, ""):
                bad = {"runtime_id": hostile, "base_url": twin_url}
                error(c.post("/api/runtimes", json=bad), 400, "invalid_input")
            dead = {"runtime_id": "dead-rt", "base_url": dead_url, "token": DEAD_TOKEN}
            registered = c.post("/api/runtimes", json=dead)
            assert registered.json()["runtime"]["status"] == "unavailable"
            error(c.get("/api/runtimes/dead-rt/workers"), 503, "runtime_unavailable")
            error(c.post("/api/runtimes/dead-rt/workers", json={}), 503, "runtime_unavailable")
            assert c.get("/api/runtimes").status_code == 200
            assert c.get("/api/workers").json()["diagnostics"][0]["runtime_id"] == "dead-rt"
            seen = c.seen

    secrets = [
        RUNTIME_TOKEN, PROVIDER_KEY, DEAD_TOKEN, str(tmp_path), twin_url, live_url, dead_url,
        f"127.0.0.1:{tport}", f"127.0.0.1:{lport}", browser_token(data),
    ]  # fmt: skip
    for text in seen:
        for secret in secrets:
            assert secret not in text, secret
