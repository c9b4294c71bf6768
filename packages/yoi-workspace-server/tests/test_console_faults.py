"""The console when processes die: a remote runtime added in the UI and then killed, and the
Backend itself killed (SIGKILL) and restarted while a reply streams. Real ``yoi up`` and
``yoi-runtime`` processes, a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._browser import (
    REMOTE_TOKEN,
    api_entries,
    backend_process,
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

LONG = " ".join(f"word{i}" for i in range(200))  # ~12 s at 60 ms a delta


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module."""
    with chromium() as launched:
        yield launched


def wait_for(page: Any, script: str, arg: Any = None, timeout: float = 20_000) -> None:
    page.wait_for_function(script, arg=arg, timeout=timeout)


def live_longer_than(page: Any, n: int, timeout: float = 20_000) -> None:
    wait_for(
        page,
        "n => (document.querySelector('[data-testid=live-reply]')?.textContent.length ?? 0) > n",
        n,
        timeout,
    )


def status_is(page: Any, status: str, timeout: float = 20_000) -> None:
    wait_for(
        page,
        "s => document.querySelector('[data-testid=worker-status]')?.textContent === s",
        status,
        timeout,
    )


def test_a_remote_added_in_the_ui_then_killed_turns_unavailable_with_its_reason(
    browser: Any, tmp_path: Path
) -> None:
    """A remote runtime added on the Runtimes screen shows running (its token never shown
    back); killed, its row turns unavailable with the typed reason, the Workers screen says
    why, and the embedded runtime keeps working; then it can be removed."""
    port = free_port()
    with (
        backend_process(tmp_path / "backend") as backend,
        runtime_process(tmp_path / "remote", "remote-b", port) as remote,
    ):
        context, watch = new_context(browser, backend.url)
        page = context.new_page()
        page.goto(backend.link)
        page.click("nav a[href='/runtimes']")
        page.fill("[data-testid=remote-id]", "remote-b")
        page.fill("[data-testid=remote-name]", "Remote B")
        page.fill("[data-testid=remote-url]", f"http://127.0.0.1:{port}")
        page.fill("[data-testid=remote-token]", REMOTE_TOKEN)
        page.click("[data-testid=remote-add]")
        page.wait_for_selector(
            "[data-testid=runtime-row][data-runtime-id=remote-b][data-status=running]"
        )
        assert page.input_value("[data-testid=remote-token]") == ""
        assert REMOTE_TOKEN not in page.content()
        remote_worker = backend.api(
            "POST", "/api/runtimes/remote-b/workers", {"name": "on the remote"}
        )["worker"]["worker_id"]
        embedded_worker = backend.create_worker(profile="fast", name="embedded")
        screenshot(page, "runtimes-remote")

        remote.kill()
        row = "[data-testid=runtime-row][data-runtime-id=remote-b]"
        page.wait_for_selector(f"{row}[data-status=unavailable]", timeout=15_000)
        page.wait_for_selector(f"{row} [data-testid=diagnostic][data-code='remote.unreachable']")
        assert (
            page.get_attribute(
                "[data-testid=runtime-row][data-runtime-id=backend-internal]", "data-status"
            )
            == "running"
        )
        screenshot(page, "runtimes-unavailable")

        page.click("nav a[href='/']")
        page.wait_for_selector(
            "[data-testid=diagnostic][data-runtime-id=remote-b]:has-text('remote.unreachable')"
        )
        page.wait_for_selector(f"[data-testid=worker-row][data-worker-id='{embedded_worker}']")
        assert page.locator(f"[data-worker-id='{remote_worker}']").count() == 0
        assert page.get_attribute("[data-testid=connection-state]", "data-state") == "live"

        page.click(f"[data-testid=worker-row][data-worker-id='{embedded_worker}']")
        page.wait_for_selector("[data-testid=connection-state][data-state=live]")
        page.fill("[data-testid=composer]", "still working")
        page.press("[data-testid=composer]", "Enter")
        wait_for(
            page, "() => document.querySelectorAll('[data-testid=transcript-entry]').length >= 2"
        )
        assert entries(page) == api_entries(backend.transcript(embedded_worker))

        page.click("nav a[href='/runtimes']")
        page.click(f"{row} [data-testid=remote-remove]")
        page.wait_for_selector(row, state="detached")
        watch.check(context.pages)
        context.close()


def test_backend_killed_and_restarted_mid_stream_resumes_with_no_gap(
    browser: Any, tmp_path: Path
) -> None:
    """SIGKILL of the Backend while a remote Worker's reply streams: the page shows
    'reconnecting', resumes when the Backend is back, and the streamed text equals the
    transcript (nothing lost, nothing twice); an embedded turn killed the same way shows as
    interrupted."""
    runtime_port, backend_port = free_port(), free_port()
    with runtime_process(tmp_path / "remote", "remote-c", runtime_port):
        backend = start_backend(tmp_path / "backend", backend_port)
        try:
            backend.api(
                "POST",
                "/api/runtimes",
                {
                    "runtime_id": "remote-c",
                    "base_url": f"http://127.0.0.1:{runtime_port}",
                    "token": REMOTE_TOKEN,
                },
            )
            worker_id = backend.api(
                "POST",
                "/api/runtimes/remote-c/workers",
                {"profile": {"kind": "named", "name": "slow"}, "name": "survives"},
            )["worker"]["worker_id"]
            context, watch = new_context(browser, backend.url)
            watch.allow_network_down = True
            page = context.new_page()
            page.goto(backend.link)
            page.wait_for_selector("yoi-workers h1")
            page.goto(f"{backend.url}/runtimes/remote-c/workers/{worker_id}")
            page.wait_for_selector("[data-testid=connection-state][data-state=live]")
            page.fill("[data-testid=composer]", LONG)
            page.press("[data-testid=composer]", "Enter")
            live_longer_than(page, 20)

            for _ in range(2):  # twice in a row, mid-stream
                backend.process.kill()
                page.wait_for_selector(
                    "[data-testid=connection-state][data-state=reconnecting]", timeout=10_000
                )
                before = page.evaluate(
                    "document.querySelector('[data-testid=live-reply]')?.textContent ?? ''"
                )
                stop_backend(backend)
                backend = start_backend(tmp_path / "backend", backend_port)
                page.wait_for_selector(
                    "[data-testid=connection-state][data-state=live]", timeout=15_000
                )
                # The stream goes on from where it was: more text, or (when the remote
                # finished the turn meanwhile) the committed reply.
                wait_for(
                    page,
                    "n => (document.querySelector('[data-testid=live-reply]')?.textContent"
                    ".length ?? 0) > n || !!document.querySelector('[data-role=assistant]')",
                    len(before),
                )
            screenshot(page, "worker-resumed")
            wait_for(
                page,
                "() => document.querySelectorAll('[data-testid=transcript-entry]').length >= 2",
                timeout=30_000,
            )
            status_is(page, "idle")
            transcript = backend.transcript(worker_id, runtime_id="remote-c")
            assert entries(page) == api_entries(transcript)
            assert transcript[-1]["content"] == LONG
            assert page.get_attribute("[data-role=assistant]", "data-streamed") == "match"
            assert stream_counts(page)["live"] == 1

            # An embedded turn dies with the Backend: after the restart it is interrupted.
            embedded = backend.create_worker(name="embedded")
            page.goto(f"{backend.url}/runtimes/backend-internal/workers/{embedded}")
            page.wait_for_selector("[data-testid=connection-state][data-state=live]")
            page.fill("[data-testid=composer]", LONG)
            page.press("[data-testid=composer]", "Enter")
            live_longer_than(page, 10)
            backend.process.kill()
            stop_backend(backend)
            backend = start_backend(tmp_path / "backend", backend_port)
            page.wait_for_selector(
                "[data-testid=turn-note][data-outcome=interrupted]", timeout=20_000
            )
            status_is(page, "idle")
            assert page.locator("[data-testid=live-reply]").count() == 0
            assert entries(page) == api_entries(backend.transcript(embedded))
            watch.check(context.pages)
            context.close()
        finally:
            stop_backend(backend)
