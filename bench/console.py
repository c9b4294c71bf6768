"""Benchmark of the web console in a real Chromium (Debian's, through Playwright), against a
bare EventSource page on the same Backend stream, in the same run.

- **First delta**: ``POST …/input`` → the first ``output_delta`` visible in the DOM. The console
  (its Worker page, the ``live-reply`` element) against a bare page (an ``EventSource``
  that writes each delta into a ``<div>``), in alternating rounds on the same Worker. Target:
  console ≤ 1.5 × bare + 5 ms (medians).
- **20,000 deltas**: one echo turn of 20,000 words, rendered by both pages at once (so the
  Runtime's pace is the same for both). Every delta must be rendered (the console
  checks that the text it rendered live equals the committed message: ``data-streamed=match``);
  the rendered delta rate (deltas ÷ time from the first to the last rendered) must be ≥ 50 % of
  the bare page's; the longest main-thread task (``PerformanceObserver`` ``longtask``) < 100 ms
  (the bare page's longest, and the number of long tasks of each, are reported beside it).
- **10,000 entries**: opening a Worker whose transcript has 10,000 entries; the latest page
  painted (the frame after the last entry is in the DOM, from navigation start) < 300 ms; the
  page's JS heap (CDP ``JSHeapUsedSize``) is reported.

The bare page runs in a browser context of its own (a renderer process of its own), so that
its work is not on the console's main thread. Run: ``uv run python bench/console.py`` (two to
three minutes; ``BENCH_DEBUG=1`` also prints the console's long tasks of the turn). Backend,
browser and client share the machine's cores with whatever else runs; read the ratios, not the
absolute figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

import httpx  # noqa: E402
from _report import Row, report  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

CHROMIUM = os.environ.get("YOI_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
TOKEN = "bench-console-token-8d1f"
# fast: the 20,000-delta turn as fast as the Runtime streams it; paced: a reply whose first
# delta is on screen before the rest arrives (as a model's is), for the first-delta rounds.
PROFILES = """
[profiles.fast]
provider = "echo"
[profiles.paced]
provider = "echo"
chunk_delay_ms = 20
"""

# The bare page: an EventSource on /api/events that writes each delta into a div, and
# records when the first delta was in the DOM and when the last one was.
BARE = """
([runtimeId, workerId, cursor]) => {
  window.__bare = { first: null, last: null, count: 0 };
  const div = document.createElement('div');
  document.body.replaceChildren(div);
  const params = new URLSearchParams({ runtime_id: runtimeId, worker_id: workerId, cursor });
  const source = new EventSource(`/api/events?${params}`);
  window.__bareSource = source;
  source.addEventListener('output_delta', (message) => {
    const event = JSON.parse(message.data);
    div.append(event.data.text);
    const now = performance.now();
    if (window.__bare.first === null) window.__bare.first = now;
    window.__bare.last = now;
    window.__bare.count += 1;
  });
  return new Promise((resolve) => { source.onopen = () => resolve(true); });
}
"""

# In the console: when the live reply's text changes, note the time (the DOM has it then).
WATCH_CONSOLE = """
() => {
  window.__console = { first: null, last: null, count: 0 };
  const streamed = '[data-testid=transcript-entry][data-streamed]';
  const before = document.querySelectorAll(streamed).length;
  // The reply is in the DOM while the live reply has text, and once its entry is committed.
  const observer = new MutationObserver(() => {
    const node = document.querySelector('[data-testid=live-reply]');
    const committed = document.querySelectorAll(streamed).length > before;
    if (!(node && node.textContent) && !committed) return;
    const now = performance.now();
    if (window.__console.first === null) window.__console.first = now;
    window.__console.last = now;
    window.__console.count += 1;
  });
  observer.observe(document.querySelector('.transcript-list'),
    { childList: true, subtree: true, characterData: true });
  window.__consoleObserver = observer;
}
"""

POST = """
async ([path, content]) => {
  const start = performance.now();
  const response = await fetch(path, { method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ content }) });
  if (!response.ok) throw new Error(await response.text());
  return start;
}
"""

LONGTASKS = """
window.__longtasks = [];
try {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__longtasks.push([entry.startTime, entry.duration, entry.name]);
    }
  }).observe({ type: 'longtask', buffered: true });
} catch (e) { window.__longtasks = null; }
"""

OPEN_PAINTED = """
(last) => new Promise((resolve) => {
  const done = () => requestAnimationFrame(() => resolve(performance.now()));
  const check = () => document.querySelector(
    `[data-testid=transcript-entry][data-sequence="${last}"]`);
  if (check()) { done(); return; }
  const observer = new MutationObserver(() => { if (check()) { observer.disconnect(); done(); } });
  observer.observe(document.documentElement, { childList: true, subtree: true });
})
"""


def start_backend(data: Path) -> tuple[subprocess.Popen[str], str]:
    (data / "profiles.toml").write_text(PROFILES)
    (data / "token").write_text(TOKEN)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from yoi.cli import main; sys.exit(main())",
            "up",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            str(data / "backend"),
            "--token-file",
            str(data / "token"),
            "--profiles",
            str(data / "profiles.toml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split("listening on", 1)[1].strip()
    return proc, url


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="first-delta rounds per page")
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_backend(Path(tmp))
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        try:
            rows = run(url, http, args)
        finally:
            http.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    report("console", rows)


def new_worker(http: httpx.Client, name: str, profile: str = "fast") -> str:
    body = {"profile": {"kind": "named", "name": profile}, "name": name}
    response = http.post("/api/runtimes/backend-internal/workers", json=body)
    response.raise_for_status()
    return str(response.json()["worker"]["worker_id"])


def wait_idle(http: httpx.Client, worker_id: str) -> None:
    while True:
        worker = http.get(f"/api/runtimes/backend-internal/workers/{worker_id}").json()["worker"]
        if worker["status"] == "idle" and worker["queued_inputs"] == 0:
            return
        time.sleep(0.02)


def run(url: str, http: httpx.Client, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        context.add_init_script(LONGTASKS)
        signin = context.request.post(f"{url}/api/session", data={"token": TOKEN})
        assert signin.ok, signin.text()
        worker_id = new_worker(http, "bench", "paced")
        base = f"/api/runtimes/backend-internal/workers/{worker_id}"

        console = context.new_page()
        console.goto(f"{url}/runtimes/backend-internal/workers/{worker_id}")
        console.wait_for_selector("[data-testid=connection-state][data-state=live]")
        # The bare page in a browser context of its own, so in a renderer process of its own:
        # its work never runs on the console's main thread (nor counts in its long tasks).
        bare_context = browser.new_context()
        bare_context.add_init_script(LONGTASKS)
        signin = bare_context.request.post(f"{url}/api/session", data={"token": TOKEN})
        assert signin.ok, signin.text()
        bare = bare_context.new_page()
        bare.goto(f"{url}/healthz")
        cursor = http.get(f"{base}/transcript").json()["transcript"]["cursor"]
        bare.evaluate(BARE, ["backend-internal", worker_id, cursor])

        print("first delta rounds …", file=sys.stderr, flush=True)
        # -- first delta -------------------------------------------------------------------
        console_ms: list[float] = []
        bare_ms: list[float] = []
        for i in range(args.rounds + 2):
            for page, key, into in ((console, "__console", console_ms), (bare, "__bare", bare_ms)):
                if key == "__console":
                    # The previous reply is settled on screen before this round starts.
                    page.wait_for_function(
                        "() => !document.querySelector('[data-testid=live-reply]')"
                    )
                    page.evaluate(WATCH_CONSOLE)
                else:
                    page.evaluate("window.__bare.first = null")
                page.bring_to_front()
                start = page.evaluate(POST, [f"{base}/input", f"round {i} hello world"])
                page.wait_for_function(f"() => window.{key}.first !== null")
                first = page.evaluate(f"window.{key}.first")
                if key == "__console":
                    page.evaluate("window.__consoleObserver.disconnect()")
                wait_idle(http, worker_id)
                if i >= 2:  # two warm-up rounds
                    into.append(first - start)
        c, b = median(console_ms), median(bare_ms)
        rows.append(
            Row(
                "POST input -> first delta in the DOM (console, median)",
                c,
                "ms",
                b,
                "bare EventSource page",
                "<= 1.5x bare + 5 ms",
                c <= 1.5 * b + 5,
            )
        )
        rows.append(
            Row(
                "  console - bare (median of the differences)",
                median([x - y for x, y in zip(console_ms, bare_ms, strict=True)]),
                "ms",
            )
        )

        print(f"{args.deltas:,}-delta turn …", file=sys.stderr, flush=True)
        # -- 20,000 deltas -----------------------------------------------------------------
        text = " ".join(f"w{i}" for i in range(args.deltas))
        worker_id = new_worker(http, "many deltas", "fast")
        base = f"/api/runtimes/backend-internal/workers/{worker_id}"
        console.goto(f"{url}/runtimes/backend-internal/workers/{worker_id}")
        bare.evaluate("window.__bareSource.close()")
        cursor = http.get(f"{base}/transcript").json()["transcript"]["cursor"]
        bare.evaluate(BARE, ["backend-internal", worker_id, cursor])
        # Both pages render the same turn at once: the Runtime's pace is the same for both.
        console.reload()
        console.wait_for_selector("[data-testid=connection-state][data-state=live]")
        console.wait_for_selector(".transcript-list", state="attached")
        console.evaluate(WATCH_CONSOLE)
        bare.evaluate("window.__bare = {first: null, last: null, count: 0}")
        posted = console.evaluate(POST, [f"{base}/input", text])
        bare.wait_for_function(f"() => window.__bare.count >= {args.deltas}", timeout=120_000)
        console.wait_for_selector(
            "[data-testid=transcript-entry][data-role=assistant]:last-child[data-streamed]",
            timeout=120_000,
        )
        wait_idle(http, worker_id)
        rates = {}
        for page, key in ((bare, "__bare"), (console, "__console")):
            first, last = page.evaluate(f"[window.{key}.first, window.{key}.last]")
            rates[key] = args.deltas / max(0.001, (last - first) / 1000)
        streamed = console.get_attribute(
            "[data-testid=transcript-entry][data-role=assistant]:last-child", "data-streamed"
        )
        # Long tasks of the turn only (from the POST on), not of the page's load.
        time.sleep(0.5)  # the observer reports asynchronously
        tasks = console.evaluate(
            "t => (window.__longtasks || [[0, -1]]).filter(([start]) => start >= t)", posted
        )
        longest = max([0.0, *(float(d) for _, d, *_ in tasks)])
        # The bare page's, over the same turn (its clock is its own: from its first delta).
        bare_tasks = bare.evaluate(
            "t => (window.__longtasks || [[0, -1]]).filter(([start]) => start >= t - 1000)",
            bare.evaluate("window.__bare.first"),
        )
        bare_longest = max([0.0, *(float(d) for _, d, *_ in bare_tasks)])
        if os.environ.get("BENCH_DEBUG"):
            print("visibility", console.evaluate("document.visibilityState"), file=sys.stderr)
            print(
                "tasks", [(round(t - posted), round(d), *n) for t, d, *n in tasks], file=sys.stderr
            )
        rows.append(
            Row(
                f"{args.deltas:,}-delta turn: rendered deltas/s (console)",
                rates["__console"],
                "deltas/s",
                rates["__bare"],
                "bare EventSource page",
                ">= 0.5x bare",
                rates["__console"] >= 0.5 * rates["__bare"],
            )
        )
        rows.append(
            Row(
                "every delta rendered (live text == committed message)",
                1.0 if streamed == "match" else 0.0,
                "bool",
                target="1",
                ok=streamed == "match",
            )
        )
        rows.append(
            Row(
                "longest main-thread task during the turn (console; 0: none >= 50 ms)",
                longest,
                "ms",
                bare_longest,
                "bare EventSource page",
                target="< 100 ms",
                ok=0 <= longest < 100,
            )
        )

        rows.append(
            Row(
                "  long tasks (>= 50 ms) during the turn (console)",
                len(tasks),
                "tasks",
                len(bare_tasks),
                "bare EventSource page",
            )
        )

        print(f"{args.entries:,} entries …", file=sys.stderr, flush=True)
        # -- 10,000 entries ----------------------------------------------------------------
        big = new_worker(http, "big")
        path = f"/api/runtimes/backend-internal/workers/{big}/input"
        for i in range(args.entries):
            http.post(path, json={"kind": "system", "content": f"entry {i} of a long transcript"})
        painted: list[float] = []
        heap = 0.0
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        for _ in range(5):
            page.goto(f"{url}/runtimes/backend-internal/workers/{big}", wait_until="commit")
            painted.append(float(page.evaluate(OPEN_PAINTED, args.entries)))
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            heap = metrics.get("JSHeapUsedSize", 0.0) / 1e6
        shown = page.locator("[data-testid=transcript-entry]").count()
        p = median(painted)
        rows.append(
            Row(
                f"open a {args.entries:,}-entry Worker: latest page painted (median of 5)",
                p,
                "ms",
                target="< 300 ms",
                ok=p < 300,
            )
        )
        rows.append(Row("entries rendered on open (paged)", shown, "entries"))
        rows.append(Row("JS heap after open", heap, "MB"))
        rows.append(Row("machine load average (1 min) at the end", os.getloadavg()[0], "runnable"))
        browser.close()
    return rows


if __name__ == "__main__":
    main()
