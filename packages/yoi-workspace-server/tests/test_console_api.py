"""The Backend routes the console reads besides the Runtime API: ``GET
/api/runtimes/{runtime_id}/diagnostics`` (a Runtime's own diagnostics) and the Worker
summary's ``last_activity_at``. Real ``yoi up`` and ``yoi-runtime`` processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx

from worker_runtime import Runtime

from ._browser import (
    REMOTE_TOKEN,
    backend_process,
    free_port,
    runtime_process,
)


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return dict(body)


async def make_store(root: Path) -> None:
    """An fs-store root left behind by a Runtime (shown read-only with --local-store)."""
    from worker_runtime.store.fs import FsRuntimeStore

    async with Runtime(runtime_id="left-behind", store=FsRuntimeStore(root)) as rt:
        await rt.create_worker({"name": "old"})


def test_runtime_diagnostics_route(tmp_path: Path) -> None:
    """GET /api/runtimes/{rid}/diagnostics returns each Runtime's own diagnostics (a remote's
    too, with worker_id), is bounded by limit, refuses a read-only store as unsupported and
    an unknown runtime as runtime_not_found, and needs the token."""
    port = free_port()
    store = tmp_path / "local"
    anyio.run(make_store, store)
    with (
        runtime_process(tmp_path / "remote", "remote-d", port, store="memory", profiles=False),
        backend_process(tmp_path / "backend", extra=["--local-store", str(store)]) as backend,
    ):
        backend.api(
            "POST",
            "/api/runtimes",
            {
                "runtime_id": "remote-d",
                "base_url": f"http://127.0.0.1:{port}",
                "token": REMOTE_TOKEN,
            },
        )
        remote = backend.api("GET", "/api/runtimes/remote-d/diagnostics")["diagnostics"]
        assert [(d["code"], d["worker_id"], d["severity"]) for d in remote] == [
            ("profile.default_echo", None, "info")
        ]
        assert set(remote[0]) == {"id", "severity", "code", "message", "worker_id", "at"}
        embedded = backend.api("GET", "/api/runtimes/backend-internal/diagnostics?limit=1")
        assert len(embedded["diagnostics"]) <= 1
        assert "profile.default_echo" not in {d["code"] for d in embedded["diagnostics"]}

        http = backend.http
        error(http.get("/api/runtimes/remote-d/diagnostics?limit=0"), 400, "invalid_input")
        error(http.get("/api/runtimes/remote-d/diagnostics?limit=100000"), 400, "limit_too_large")
        error(http.get("/api/runtimes/nope/diagnostics"), 404, "runtime_not_found")
        kinds = {
            r["runtime_id"]: r["kind"] for r in backend.api("GET", "/api/runtimes")["runtimes"]
        }
        assert kinds["left-behind"] == "local_compatibility"
        error(http.get("/api/runtimes/left-behind/diagnostics"), 501, "unsupported_operation")
        anonymous = httpx.get(f"{backend.url}/api/runtimes/remote-d/diagnostics")
        assert anonymous.status_code == 401


def test_worker_summary_carries_last_activity_at(tmp_path: Path) -> None:
    """Every Worker row of /api/workers has last_activity_at, the at of the Worker's newest
    event: it moves with a turn and is the same after the Backend restarts."""
    with backend_process(tmp_path / "backend") as backend:
        wid = backend.create_worker(profile="fast", name="active")
        base = f"/api/runtimes/backend-internal/workers/{wid}"
        created = backend.api("GET", base)["worker"]
        assert created["last_activity_at"] >= created["created_at"]
        backend.api("POST", f"{base}/input", {"content": "one two"})
        for _ in range(200):
            worker = backend.api("GET", base)["worker"]
            if worker["status"] == "idle" and worker["overview"]["turns"]["completed"] == 1:
                break
        last = backend.transcript(wid)[-1]["at"]
        rows = {w["worker_id"]: w for w in backend.api("GET", "/api/workers")["workers"]}
        assert rows[wid]["last_activity_at"] >= last > created["last_activity_at"]
        assert rows[wid]["last_activity_at"] == worker["overview"]["last_activity_at"]
        before = rows[wid]["last_activity_at"]
    with backend_process(tmp_path / "backend") as backend:
        rows = {w["worker_id"]: w for w in backend.api("GET", "/api/workers")["workers"]}
        assert rows[wid]["last_activity_at"] == before
