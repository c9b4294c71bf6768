"""The console when its stream cannot resume: a remote ``yoi-runtime`` with a memory store and
a tiny event window, so that the console's cursor really expires (``cursor_expired``) and its
stream really falls behind the retained backlog (``resync_required``). The page shows
``resync``, re-reads the transcript, goes on live, and renders exactly the transcript. Also the
stored diagnostics of the Worker's runtime in the Worker console. Real ``yoi up`` and
``yoi-runtime`` processes, a real Chromium."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._browser import (
    REMOTE_TOKEN,
    Backend,
    api_entries,
    chromium,
    entries,
    free_port,
    new_context,
    require_chromium,
    runtime_process,
    screenshot,
    start_backend,
    stop_backend,
    stream_counts,
)

require_chromium()
pytest.importorskip("playwright.sync_api")

RUNTIME = "remote-m"

# Every change of the connection state, in order (the resync state may last only a moment).
RECORD_STATES = """
() => {
  const node = document.querySelector('[data-testid=connection-state]');
  window.__states = [node.dataset.state];
  new MutationObserver(() => {
    const state = node.dataset.state;
    if (window.__states[window.__states.length - 1] !== state) window.__states.push(state);
  }).observe(node, { attributes: true, attributeFilter: ['data-state'] });
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module."""
    with chromium() as launched:
        yield launched


def register(backend: Backend, port: int) -> str:
    backend.api(
        "POST",
        "/api/runtimes",
        {"runtime_id": RUNTIME, "base_url": f"http://127.0.0.1:{port}", "token": REMOTE_TOKEN},
    )
    body = {"name": "window"}  # the remote's default profile: the builtin echo
    return str(backend.api("POST", f"/api/runtimes/{RUNTIME}/workers", body)["worker"]["worker_id"])


def remote_client(port: int) -> httpx.Client:
    """The remote Runtime's own API (the Backend is down or stopped meanwhile)."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {REMOTE_TOKEN}"},
        timeout=30,
    )


def wait_idle(remote: httpx.Client, worker_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        worker = remote.get(f"/v1/workers/{worker_id}").json()["worker"]
        if worker["status"] == "idle" and worker["queued_inputs"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the remote Worker did not become idle")


def open_console(browser: Any, backend: Backend, worker_id: str) -> tuple[Any, Any, Any]:
    context, watch = new_context(browser, backend.url)
    page = context.new_page()
    page.goto(backend.link)
    page.wait_for_selector("yoi-workers h1")
    page.goto(f"{backend.url}/runtimes/{RUNTIME}/workers/{worker_id}")
    page.wait_for_selector("[data-testid=connection-state][data-state=live]", timeout=15_000)
    page.evaluate(RECORD_STATES)
    return context, watch, page


def count_entries(page: Any, n: int, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=transcript-entry]').length === n",
        arg=n,
        timeout=timeout,
    )


def resynced(page: Any, timeout: float = 60_000) -> list[str]:
    """Wait until the page went through ``resync`` and is live again; its states."""
    page.wait_for_function(
        "() => window.__states.includes('resync') && window.__states.at(-1) === 'live'",
        timeout=timeout,
    )
    return list(page.evaluate("window.__states"))


def reason(page: Any) -> str:
    """Why the last resync happened, as the connection state shows it."""
    return str(page.get_attribute("[data-testid=connection-state]", "data-reason"))


def send_in_ui(page: Any, text: str) -> None:
    page.fill("[data-testid=composer]", text)
    page.press("[data-testid=composer]", "Enter")


def test_an_expired_cursor_resyncs_visibly_and_renders_the_transcript(
    browser: Any, tmp_path: Path
) -> None:
    """While the Backend is down, the remote's tiny window drops every event after the
    console's cursor: when the Backend is back, the resumed stream says cursor_expired, the
    page shows resync, re-reads the transcript and goes on live; the rendered text equals the
    transcript, and a new turn streams in. The runtime's stored diagnostic (its default is the
    builtin echo) is listed in the Worker console."""
    port, backend_port = free_port(), free_port()
    window = ["--event-window-bytes", "100000"]
    with runtime_process(
        tmp_path / "remote", RUNTIME, port, store="memory", profiles=False, extra=window
    ):
        backend = start_backend(tmp_path / "backend", backend_port)
        try:
            worker_id = register(backend, port)
            context, watch, page = open_console(browser, backend, worker_id)
            watch.allow_network_down = True
            page.wait_for_selector(
                "[data-testid=diagnostic][data-code='profile.default_echo'][data-scope=runtime]"
            )
            send_in_ui(page, "before the outage")
            count_entries(page, 2)

            backend.process.kill()
            page.wait_for_selector(
                "[data-testid=connection-state][data-state=reconnecting]", timeout=10_000
            )
            stop_backend(backend)
            with remote_client(port) as remote:
                for turn in range(3):  # ~180 kB of events a turn: the window holds 100 kB
                    text = " ".join(f"t{turn}w{i:03d}" + "x" * 90 for i in range(400))
                    body = {"content": text, "on_busy": "enqueue"}
                    response = remote.post(f"/v1/workers/{worker_id}/input", json=body)
                    assert response.status_code == 200, response.text
                    wait_idle(remote, worker_id)
            backend = start_backend(tmp_path / "backend", backend_port)

            states = resynced(page)
            assert states[0] == "live"
            assert "reconnecting" in states
            assert reason(page) == "cursor_expired"
            transcript = backend.transcript(worker_id, runtime_id=RUNTIME)
            assert len(transcript) == 8
            count_entries(page, 8)
            assert entries(page) == api_entries(transcript)
            screenshot(page, "worker-resynced")

            send_in_ui(page, "after the resync")
            count_entries(page, 10)
            status = "document.querySelector('[data-testid=worker-status]').textContent"
            page.wait_for_function(f"() => {status} === 'idle'")
            transcript = backend.transcript(worker_id, runtime_id=RUNTIME)
            assert entries(page) == api_entries(transcript)
            assert (
                page.get_attribute("[data-role=assistant]:last-child", "data-streamed") == "match"
            )
            assert stream_counts(page)["live"] == 1
            watch.check(context.pages)
            context.close()
        finally:
            stop_backend(backend)


def test_a_stream_that_fell_behind_the_backlog_resyncs_visibly(
    browser: Any, tmp_path: Path
) -> None:
    """With the Backend stopped (SIGSTOP) while the remote Worker takes far more input than the
    remote's window and the sockets hold, the remote's subscription falls behind its backlog:
    once the Backend runs again the stream says resync_required, the page shows resync,
    re-reads the transcript and goes on live, and the rendered text equals the transcript."""
    port = free_port()
    window = ["--event-window-bytes", "200000"]
    with runtime_process(
        tmp_path / "remote", RUNTIME, port, store="memory", profiles=False, extra=window
    ):
        backend = start_backend(tmp_path / "backend")
        try:
            worker_id = register(backend, port)
            context, watch, page = open_console(browser, backend, worker_id)
            pid = backend.process.proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                with remote_client(port) as remote:
                    # 48 system inputs of 250 kB: 12 MB of events for the Worker.
                    for i in range(48):
                        text = f"input {i:02d} " + "y" * 250_000
                        body = {"kind": "system", "content": text}
                        response = remote.post(f"/v1/workers/{worker_id}/input", json=body)
                        assert response.status_code == 200, response.text
            finally:
                os.kill(pid, signal.SIGCONT)

            states = resynced(page, timeout=90_000)
            assert states[0] == "live"
            assert reason(page) == "resync_required"
            transcript = backend.transcript(worker_id, runtime_id=RUNTIME)
            assert len(transcript) == 48
            count_entries(page, 48)
            assert entries(page) == api_entries(transcript)

            send_in_ui(page, "live again")
            count_entries(page, 50)
            assert entries(page) == api_entries(backend.transcript(worker_id, runtime_id=RUNTIME))
            assert stream_counts(page)["live"] == 1
            watch.check(context.pages)
            context.close()
        finally:
            stop_backend(backend)
