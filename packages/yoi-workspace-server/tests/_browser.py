"""Shared parts of the console's browser tests: real ``yoi up`` / ``yoi-runtime`` processes and
a Chromium (Debian's, through Playwright's ``executable_path``) whose pages may reach nothing but
the Backend, and fail on any console error, page error or CSP violation."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

CHROMIUM = os.environ.get("YOI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]
BROWSER_TOKEN = "console-test-browser-token-5b1e"
REMOTE_TOKEN = "console-test-remote-token-c0ffee"

#: Where each screen's screenshot goes (``YOI_CONSOLE_SCREENSHOTS`` overrides it).
SCREENSHOTS = Path(
    os.environ.get("YOI_CONSOLE_SCREENSHOTS", Path(__file__).parent / ".." / ".screenshots")
).resolve()

PROFILES = """
default = "slow"
[profiles.slow]
provider = "echo"
chunk_delay_ms = 60
[profiles.fast]
provider = "echo"
"""

# Browser messages that are the network's, not the console's: a handled HTTP error answer
# (409 worker_busy, 401 before sign-in) and, where a test kills a process on purpose, the
# refused or cut connections while it is down (which one Chromium names depends on where the
# request was when the process died).
_HTTP_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of")
_NET_DOWN = re.compile(
    r"net::ERR_(CONNECTION_REFUSED|EMPTY_RESPONSE|INCOMPLETE_CHUNKED_ENCODING|CONNECTION_RESET"
    r"|CONNECTION_CLOSED|CONNECTION_ABORTED|SOCKET_NOT_CONNECTED)"
)


def require_chromium() -> None:
    """In CI a missing Chromium fails the run; elsewhere the browser tests are skipped."""
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright's sync API, closed on exit (the sync API holds an
    event loop while it runs: a test module stops it before the next module's async tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    proc: subprocess.Popen[str]
    lines: list[str]

    def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _start(args: list[str], until: str, timeout: float = 30.0) -> Process:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if until in line:
            return Process(proc, lines)
    proc.kill()
    proc.wait()
    raise AssertionError(f"the process did not start: {lines}")


def _stop(process: Process) -> None:
    proc = process.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass
class Backend:
    """A ``yoi up`` process and an httpx client that signs its requests with the token."""

    data: Path
    port: int
    process: Process
    link: str
    http: httpx.Client = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    def create_worker(self, profile: str = "slow", name: str | None = None) -> str:
        body: dict[str, Any] = {"profile": {"kind": "named", "name": profile}}
        if name is not None:
            body["name"] = name
        worker = self.api("POST", "/api/runtimes/backend-internal/workers", body)["worker"]
        return str(worker["worker_id"])

    def transcript(self, worker_id: str, runtime_id: str = "backend-internal") -> list[Any]:
        path = f"/api/runtimes/{runtime_id}/workers/{worker_id}/transcript?limit=256"
        return list(self.api("GET", path)["transcript"]["items"])


def start_backend(data: Path, port: int | None = None, extra: Sequence[str] = ()) -> Backend:
    data.mkdir(parents=True, exist_ok=True)
    (data / "profiles.toml").write_text(PROFILES)
    token_file = data / "browser.token"
    token_file.write_text(BROWSER_TOKEN)
    token_file.chmod(0o600)
    port = port or free_port()
    args = [
        sys.executable, "-c", "import sys; from yoi.cli import main; sys.exit(main())",
        "up", "--bind", f"127.0.0.1:{port}", "--data-dir", str(data / "backend"),
        "--token-file", str(token_file), "--profiles", str(data / "profiles.toml"), *extra,
    ]  # fmt: skip
    process = _start(args, "open the console:")
    link = process.lines[-1].split("open the console:", 1)[1].strip()
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {BROWSER_TOKEN}"},
        timeout=10,
    )
    return Backend(data, port, process, link, http)


def stop_backend(backend: Backend) -> None:
    backend.http.close()
    _stop(backend.process)


@contextmanager
def backend_process(
    data: Path, port: int | None = None, extra: Sequence[str] = ()
) -> Iterator[Backend]:
    backend = start_backend(data, port, extra)
    try:
        yield backend
    finally:
        stop_backend(backend)


@contextmanager
def runtime_process(
    data: Path,
    runtime_id: str,
    port: int,
    *,
    store: str = "fs",
    profiles: bool = True,
    extra: Sequence[str] = (),
) -> Iterator[Process]:
    """A ``yoi-runtime`` with an fs store (or ``store``) and the test profiles (without
    ``profiles``: none, so its default is the builtin echo and it says so in a diagnostic)."""
    data.mkdir(parents=True, exist_ok=True)
    token_file = data / "runtime.token"
    token_file.write_text(REMOTE_TOKEN)
    token_file.chmod(0o600)
    args = [
        sys.executable, "-m", "worker_runtime.cli", "--runtime-id", runtime_id,
        "--bind", f"127.0.0.1:{port}", "--store", store,
        "--token-file", str(token_file), "--shutdown-grace-s", "0.2", *extra,
    ]  # fmt: skip
    if store == "fs":
        args += ["--data-dir", str(data / "store")]
    if profiles:
        (data / "profiles.toml").write_text(PROFILES)
        args += ["--profiles", str(data / "profiles.toml")]
    process = _start(args, "listening on")
    try:
        yield process
    finally:
        _stop(process)


_RECORD_CSP = """
window.__streamsLive = 0; window.__streamsMax = 0; window.__streamsOpened = 0;
const NativeEventSource = window.EventSource;
window.EventSource = class extends NativeEventSource {
  constructor(...args) {
    super(...args);
    this.__open = true;
    window.__streamsLive += 1; window.__streamsOpened += 1;
    window.__streamsMax = Math.max(window.__streamsMax, window.__streamsLive);
  }
  close() {
    if (this.__open) { this.__open = false; window.__streamsLive -= 1; }
    super.close();
  }
};
// The console reads its stream through fetch(): count those connections the same way, from
// the request until its body ends, fails or is aborted.
const nativeFetch = window.fetch;
window.fetch = function (input, init) {
  const url = typeof input === 'string' ? input : input.url;
  if (!url.includes('/api/events')) return nativeFetch.call(this, input, init);
  window.__streamsLive += 1; window.__streamsOpened += 1;
  window.__streamsMax = Math.max(window.__streamsMax, window.__streamsLive);
  let open = true;
  const ended = () => { if (open) { open = false; window.__streamsLive -= 1; } };
  if (init && init.signal) init.signal.addEventListener('abort', ended);
  return nativeFetch.call(this, input, init).then((response) => {
    if (!response.ok || !response.body) { ended(); return response; }
    const reader = response.body.getReader();
    const body = new ReadableStream({
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) { ended(); controller.close(); } else { controller.enqueue(value); }
        } catch (error) { ended(); controller.error(error); }
      },
      cancel(reason) { ended(); return reader.cancel(reason); },
    });
    return new Response(body, {
      status: response.status, statusText: response.statusText, headers: response.headers,
    });
  }, (error) => { ended(); throw error; });
};
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@dataclass
class Watch:
    """What a browser context did that a test must fail on."""

    origin: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    allow_network_down: bool = False

    def on_console(self, message: Any) -> None:
        if message.type not in ("error", "assert"):
            return
        text = message.text
        if _HTTP_STATUS.match(text):
            return
        if self.allow_network_down and _NET_DOWN.search(text):
            return
        self.errors.append(f"console {message.type}: {text}")

    def route(self, route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(url)
            route.abort()
        else:
            route.continue_()

    def check(self, pages: list[Any]) -> None:
        for page in pages:
            if page.is_closed():
                continue
            violations = page.evaluate("window.__cspViolations || []")
            self.errors.extend(f"CSP violation: {v}" for v in violations)
        assert not self.foreign, f"requests to another origin: {self.foreign}"
        assert not self.errors, self.errors


def new_context(browser: Any, backend_url: str, **options: Any) -> tuple[Any, Watch]:
    """A fresh context (no cookies) whose every page is watched."""
    context = browser.new_context(**options)
    watch = Watch(origin=backend_url)
    context.route("**/*", watch.route)
    context.add_init_script(_RECORD_CSP)

    def on_page(page: Any) -> None:
        page.on("console", watch.on_console)
        page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))

    context.on("page", on_page)
    return context, watch


def stream_counts(page: Any) -> dict[str, int]:
    """The page's event-stream connections (EventSource or the console's fetch reader):
    ``live`` now, ``max`` at once, ``opened`` ever."""
    return dict(
        page.evaluate(
            "({live: window.__streamsLive, max: window.__streamsMax, "
            "opened: window.__streamsOpened})"
        )
    )


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def entries(page: Any) -> list[tuple[str, int, str]]:
    """The rendered transcript: (role, sequence, content) of each entry."""
    return [
        (str(role), int(seq), str(text))
        for role, seq, text in page.eval_on_selector_all(
            "[data-testid=transcript-entry]",
            "nodes => nodes.map(n => [n.dataset.role, n.dataset.sequence, "
            "n.querySelector('.content').textContent])",
        )
    ]


def api_entries(items: list[Any]) -> list[tuple[str, int, str]]:
    return [(i["role"], i["sequence"], i["content"]) for i in items]


def dump(value: Any) -> str:
    return json.dumps(value, indent=1)[:2000]
