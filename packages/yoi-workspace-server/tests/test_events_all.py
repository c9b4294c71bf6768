"""``GET /api/events``: one stream over every source, filterable by runtime, Worker and kinds,
whose composite cursor resumes each source exactly (also across a SIGKILL of the Backend); and
``GET /api/runtimes/{rid}/profiles``. Real ``yoi up`` and ``yoi-runtime`` processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._browser import (
    REMOTE_TOKEN,
    Backend,
    free_port,
    runtime_process,
    start_backend,
    stop_backend,
)


def read_events(
    backend: Backend,
    count: int,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
    **params: str,
) -> list[dict[str, Any]]:
    """The first ``count`` events of ``GET /api/events`` (messages with a data line)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    with backend.http.stream(
        "GET", "/api/events", params=params, headers=headers or {}, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                events.append(current)
                current = {}
                if len(events) >= count:
                    break
            assert time.monotonic() < deadline, f"only {len(events)} events"
    return events


def turn(backend: Backend, runtime_id: str, worker_id: str, text: str) -> None:
    backend.api("POST", f"/api/runtimes/{runtime_id}/workers/{worker_id}/input", {"content": text})


def wait_idle(backend: Backend, runtime_id: str, worker_id: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        worker = backend.api("GET", f"/api/runtimes/{runtime_id}/workers/{worker_id}")["worker"]
        if worker["status"] == "idle" and worker["queued_inputs"] == 0:
            return
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def two_sources(tmp_path: Path) -> Iterator[tuple[Backend, dict[str, str], Path, int]]:
    """A Backend with a registered remote runtime, one fast-echo Worker on each."""
    runtime_port = free_port()
    with runtime_process(tmp_path / "remote", "remote-e", runtime_port):
        backend = start_backend(tmp_path / "backend")
        try:
            backend.api(
                "POST",
                "/api/runtimes",
                {
                    "runtime_id": "remote-e",
                    "base_url": f"http://127.0.0.1:{runtime_port}",
                    "token": REMOTE_TOKEN,
                },
            )
            workers = {
                "backend-internal": backend.create_worker(profile="fast", name="e"),
                "remote-e": backend.api(
                    "POST",
                    "/api/runtimes/remote-e/workers",
                    {"profile": {"kind": "named", "name": "fast"}},
                )["worker"]["worker_id"],
            }
            holder = [backend]
            yield backend, workers, tmp_path, backend.port
        finally:
            stop_backend(holder[0])


def _history(backend: Backend, workers: dict[str, str]) -> list[tuple[str, str]]:
    """Three turns on each source, each source's events after a transcript cursor (the
    cursor of the first transcript page)."""
    cursors = {}
    for rid, wid in workers.items():
        page = backend.api("GET", f"/api/runtimes/{rid}/workers/{wid}/transcript")["transcript"]
        cursors[rid] = page["cursor"]
    for i in range(3):
        for rid, wid in workers.items():
            turn(backend, rid, wid, f"turn {i} on {rid}")
    for rid, wid in workers.items():
        wait_idle(backend, rid, wid)
    return list(cursors.items())


def test_the_merged_stream_resumes_each_source_exactly(
    two_sources: tuple[Backend, dict[str, str], Path, int],
) -> None:
    """Resuming from any composite cursor yields exactly the events after it, for every source:
    nothing lost, nothing twice, each source in its own order."""
    backend, workers, _, _ = two_sources
    _history(backend, workers)
    per_source = []
    for rid, wid in workers.items():
        first = backend.api("GET", f"/api/runtimes/{rid}/workers/{wid}/transcript?start=0&limit=1")[
            "transcript"
        ]["items"][0]["cursor"]
        # From the first entry: the rest of three turns (8 events a turn: 4 words).
        events = read_events(backend, 23, runtime_id=rid, worker_id=wid, cursor=first)
        assert {e["data"]["runtime_id"] for e in events} == {rid}
        assert all(e["id"] == e["data"]["cursor"] for e in events)
        per_source.append(events)
    embedded, remote = per_source
    # A cursor holding both sources, each mid-way: the all-sources stream resumes each.
    merged = _merge(embedded[4]["id"], remote[7]["id"])
    resumed = read_events(backend, (23 - 5) + (23 - 8), cursor=merged)
    got = {
        rid: [e["data"]["source_cursor"] for e in resumed if e["data"]["runtime_id"] == rid]
        for rid in workers
    }
    assert got["backend-internal"] == [e["data"]["source_cursor"] for e in embedded[5:]]
    assert got["remote-e"] == [e["data"]["source_cursor"] for e in remote[8:]]
    # The last id holds both sources' positions: resuming from it waits for new events.
    last = resumed[-1]["id"]
    turn(backend, "remote-e", workers["remote-e"], "after")
    assert read_events(backend, 1, cursor=last)[0]["data"]["kind"] == "input_accepted"


def _merge(a: str, b: str) -> str:
    """Two composite cursors of different sources as one (the test's stand-in for a stream
    that saw events of both)."""
    import base64

    def decode(c: str) -> dict[str, str]:
        body = c[3:]
        return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))

    merged = {**decode(a), **decode(b)}
    raw = json.dumps(merged, separators=(",", ":"), sort_keys=True).encode()
    return "b2." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_composite_cursor_survives_a_backend_sigkill(
    two_sources: tuple[Backend, dict[str, str], Path, int],
) -> None:
    """After the Backend is SIGKILLed and restarted, the Last-Event-ID a browser holds resumes
    the stream with the next event and nothing twice."""
    backend, workers, tmp_path, port = two_sources
    _history(backend, workers)
    rid, wid = "backend-internal", workers["backend-internal"]
    first = backend.api("GET", f"/api/runtimes/{rid}/workers/{wid}/transcript?limit=1")[
        "transcript"
    ]["items"][0]["cursor"]
    before = read_events(backend, 17, runtime_id=rid, worker_id=wid, cursor=first)
    backend.process.kill()
    stop_backend(backend)
    again = start_backend(tmp_path / "backend", port)
    try:
        resumed = read_events(
            again, 10, runtime_id=rid, worker_id=wid, headers={"Last-Event-ID": before[6]["id"]}
        )
        assert [e["data"]["source_cursor"] for e in resumed] == [
            e["data"]["source_cursor"] for e in before[7:17]
        ]
    finally:
        stop_backend(again)
        backend.process = again.process  # the fixture stops the live one
        backend.http = again.http


def test_filters_and_refusals(two_sources: tuple[Backend, dict[str, str], Path, int]) -> None:
    """kinds filters the events; worker_id needs runtime_id; a malformed cursor, another
    runtime's cursor, bad kinds and a missing credential are refused before the stream."""
    backend, workers, _, _ = two_sources
    cursors = dict(_history(backend, workers))
    rid, wid = "backend-internal", workers["backend-internal"]
    only = read_events(
        backend, 3, runtime_id=rid, worker_id=wid, cursor=cursors[rid], kinds="turn_completed"
    )
    assert [e["data"]["kind"] for e in only] == ["turn_completed"] * 3
    refusals = [
        ({"worker_id": wid}, 400, "invalid_input"),
        ({"cursor": "b2.not-json"}, 400, "cursor_malformed"),
        ({"cursor": "nonsense"}, 400, "cursor_malformed"),
        ({"runtime_id": rid, "cursor": cursors["remote-e"]}, 400, "cursor_unknown"),
        ({"kinds": "Turn-Completed"}, 400, "invalid_input"),
        ({"runtime_id": "no-such-runtime"}, 404, "runtime_not_found"),
        ({"runtime_id": rid, "worker_id": "wkr_missing"}, 404, "worker_not_found"),
    ]
    for params, status, code in refusals:
        response = backend.http.get("/api/events", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["error"]["code"] == code, params
    anonymous = httpx.get(f"{backend.url}/api/events")
    assert anonymous.status_code == 401


def test_profiles_of_each_runtime(two_sources: tuple[Backend, dict[str, str], Path, int]) -> None:
    """GET /api/runtimes/{rid}/profiles lists each runtime's own profiles and its default."""
    backend, _, _, _ = two_sources
    for rid in ("backend-internal", "remote-e"):
        profiles = backend.api("GET", f"/api/runtimes/{rid}/profiles")["profiles"]
        assert [(p["name"], p["kind"], p["is_default"]) for p in profiles] == [
            ("echo", "builtin", False),
            ("slow", "named", True),
            ("fast", "named", False),
        ]
        assert set(profiles[0]) == {"name", "kind", "provider", "model", "is_default"}
    missing = backend.http.get("/api/runtimes/nope/profiles")
    assert missing.status_code == 404
