"""The web console in a real Chromium against a real ``yoi up``: sign-in, create, stream, cancel,
stop, busy/queue, reload mid-turn, two tabs, XSS payloads, keyboard and a narrow screen. Every
page may reach the Backend only, and any console error, page error or CSP violation fails the
test. Kill/restart and remote runtimes are in ``test_console_faults.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._browser import (
    BROWSER_TOKEN,
    Backend,
    api_entries,
    backend_process,
    chromium,
    entries,
    new_context,
    require_chromium,
    screenshot,
    stream_counts,
)

require_chromium()
pytest.importorskip("playwright.sync_api")

LONG = " ".join(f"word{i}" for i in range(60))  # 60 deltas of 60 ms: a turn of ~3.6 s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with backend_process(tmp_path_factory.mktemp("console")) as backend:
        yield backend


@pytest.fixture
def ui(browser: Any, backend: Backend) -> Iterator[Any]:
    """A signed-in page (through the link ``yoi up`` printed); checked for foreign requests,
    console errors and CSP violations when the test ends."""
    context, watch = new_context(browser, backend.url)
    page = context.new_page()
    page.goto(backend.link)
    page.wait_for_selector("yoi-workers h1")
    yield page
    try:
        watch.check(context.pages)
    finally:
        context.close()


def worker_url(backend: Backend, worker_id: str) -> str:
    return f"{backend.url}/runtimes/backend-internal/workers/{worker_id}"


def open_worker(page: Any, backend: Backend, worker_id: str) -> None:
    page.goto(worker_url(backend, worker_id))
    page.wait_for_selector("[data-testid=worker-status]:not(:text('…'))")
    wait_state(page, "live")


def wait_state(page: Any, state: str, timeout: float = 15_000) -> None:
    page.wait_for_selector(f"[data-testid=connection-state][data-state={state}]", timeout=timeout)


def wait_status(page: Any, status: str, timeout: float = 15_000) -> None:
    page.wait_for_function(
        "s => document.querySelector('[data-testid=worker-status]')?.textContent === s",
        arg=status,
        timeout=timeout,
    )


def wait_entries(page: Any, count: int, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=transcript-entry]').length >= n",
        arg=count,
        timeout=timeout,
    )


def live_text(page: Any) -> str:
    return str(
        page.evaluate("document.querySelector('[data-testid=live-reply]')?.textContent ?? ''")
    )


def send(page: Any, text: str) -> None:
    page.fill("[data-testid=composer]", text)
    page.press("[data-testid=composer]", "Enter")


# -- sign-in ---------------------------------------------------------------------------------


def test_sign_in_by_link_sets_the_cookie_and_drops_the_token(ui: Any, backend: Backend) -> None:
    """The printed link signs in: an HttpOnly session cookie is set and the token is gone from
    the address bar, the history and the page."""
    assert "#token" not in ui.url
    assert ui.evaluate("location.hash") == ""
    # The entry of the link itself was replaced: Back leads to the page before it.
    ui.go_back()
    assert ui.url == "about:blank"
    ui.go_forward()
    assert ui.url == f"{backend.url}/"
    ui.wait_for_selector("yoi-workers h1")
    cookies = {c["name"]: c for c in ui.context.cookies()}
    assert cookies["yoi_session"]["httpOnly"] is True
    assert cookies["yoi_session"]["sameSite"] == "Strict"
    assert BROWSER_TOKEN not in ui.content()
    assert BROWSER_TOKEN not in ui.evaluate("document.cookie")
    screenshot(ui, "workers")


def test_sign_in_by_form_and_a_401_keeps_the_composer(browser: Any, backend: Backend) -> None:
    """Without a session the page shows the sign-in form; a wrong token is refused inline; a
    401 later returns to the form and what was typed in the composer survives it."""
    worker_id = backend.create_worker(name="signin")
    context, watch = new_context(browser, backend.url)
    page = context.new_page()
    page.goto(worker_url(backend, worker_id))
    page.wait_for_selector("[data-testid=signin-token]")
    screenshot(page, "signin")
    page.fill("[data-testid=signin-token]", "not-the-token")
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector(".signin .error:text('unauthorized')")
    page.fill("[data-testid=signin-token]", BROWSER_TOKEN)
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector("[data-testid=composer]")
    wait_state(page, "live")
    page.fill("[data-testid=composer]", "typed before the session ended")
    page.evaluate(
        "() => { window.__states = []; new MutationObserver(() => window.__states.push("
        "document.querySelector('[data-testid=connection-state]').dataset.state))"
        ".observe(document.querySelector('[data-testid=connection-state]'),"
        " {attributes: true}); }"
    )
    # The session ends (signed out elsewhere): the Backend ends its stream, the reconnect is
    # refused (401), the view re-reads visibly ("resync"), gets 401 and shows the form.
    page.evaluate("fetch('/api/session', {method: 'DELETE', credentials: 'same-origin'})")
    page.wait_for_selector("[data-testid=signin-token]", timeout=20_000)
    assert "resync" in page.evaluate("window.__states")
    page.fill("[data-testid=signin-token]", BROWSER_TOKEN)
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector("[data-testid=signin-token]", state="detached")
    assert page.input_value("[data-testid=composer]") == "typed before the session ended"
    page.click("[data-testid=send]")
    wait_entries(page, 2)
    wait_status(page, "idle")
    assert entries(page)[0][2] == "typed before the session ended"
    watch.check(context.pages)
    context.close()


# -- create, stream, cancel, stop, busy ------------------------------------------------------


def test_create_a_worker_in_the_ui_and_see_the_reply_stream(ui: Any, backend: Backend) -> None:
    """New Worker creates on the chosen profile with a first input; the reply streams into the
    live reply and settles as the transcript's entry."""
    ui.click("nav a[href='/new']")
    ui.wait_for_selector("[data-testid=new-profile] option[value='named:slow']", state="attached")
    ui.select_option("[data-testid=new-profile]", "named:slow")
    ui.fill("[data-testid=new-name]", "created in the ui")
    ui.fill("[data-testid=new-input]", LONG)
    screenshot(ui, "new-worker")
    ui.click("[data-testid=create]")
    ui.wait_for_url("**/runtimes/backend-internal/workers/*")
    ui.wait_for_function(
        "() => document.querySelector('[data-testid=live-reply]')?.textContent.length > 20"
    )
    partial = live_text(ui)
    assert LONG.startswith(partial)
    assert partial != LONG
    assert ui.inner_text("[data-testid=worker-status]") == "running"
    screenshot(ui, "worker-streaming")
    wait_entries(ui, 2)
    wait_status(ui, "idle")
    worker_id = ui.url.rsplit("/", 1)[1]
    assert entries(ui) == api_entries(backend.transcript(worker_id))
    assert entries(ui)[1] == ("assistant", 2, LONG)
    assert ui.get_attribute("[data-role=assistant]", "data-streamed") == "match"
    assert ui.locator("[data-testid=live-reply]").count() == 0
    screenshot(ui, "worker")


def test_a_rejected_create_shows_the_typed_error_and_leaves_nothing(
    ui: Any, backend: Backend
) -> None:
    """A create the Runtime rejects (here: blank first input) shows its code inline and creates
    no Worker."""
    before = len(backend.api("GET", "/api/workers")["workers"])
    ui.goto(f"{backend.url}/new")
    ui.wait_for_selector("[data-testid=new-profile] option", state="attached")
    ui.fill("[data-testid=new-name]", "\u0007bell")
    ui.click("[data-testid=create]")
    ui.wait_for_selector("[data-testid=form-error]:text('invalid_input')")
    assert ui.url.endswith("/new")
    assert len(backend.api("GET", "/api/workers")["workers"]) == before


def test_cancel_mid_turn_with_escape_keeps_the_partial_reply(ui: Any, backend: Backend) -> None:
    """Esc cancels the running turn; the UI settles it only on turn_cancelled, and the partial
    reply is marked as such."""
    worker_id = backend.create_worker(name="cancel me")
    open_worker(ui, backend, worker_id)
    send(ui, LONG)
    ui.wait_for_function(
        "() => document.querySelector('[data-testid=live-reply]')?.textContent.length > 10"
    )
    assert not ui.is_disabled("[data-testid=cancel]")
    ui.keyboard.press("Escape")
    ui.wait_for_selector("[data-testid=turn-note][data-outcome=cancelled]")
    wait_status(ui, "idle")
    rendered = entries(ui)
    assert rendered == api_entries(backend.transcript(worker_id))
    role, _, text = rendered[-1]
    assert role == "assistant"
    assert LONG.startswith(text)
    assert text != LONG
    assert ui.get_attribute("[data-role=assistant]", "data-partial") == "true"
    assert ui.is_disabled("[data-testid=cancel]")


def test_stop_needs_a_confirmation_and_ends_the_worker(ui: Any, backend: Backend) -> None:
    """Stop asks first; 'Keep it' does nothing; confirming stops the Worker for good."""
    worker_id = backend.create_worker(name="stop me")
    open_worker(ui, backend, worker_id)
    ui.click("[data-testid=stop]")
    ui.click("[data-testid=stop-dismiss]")
    assert ui.inner_text("[data-testid=worker-status]") == "idle"
    ui.click("[data-testid=stop]")
    ui.click("[data-testid=stop-confirm]")
    wait_status(ui, "stopped")
    assert ui.is_disabled("[data-testid=composer]")
    assert ui.is_disabled("[data-testid=stop]")
    detail = backend.api("GET", f"/api/runtimes/backend-internal/workers/{worker_id}")
    assert detail["worker"]["status"] == "stopped"


def test_busy_then_queued_input_runs_after_the_turn(ui: Any, backend: Backend) -> None:
    """A second input while a turn runs shows worker_busy inline; 'Queue it' enqueues it and it
    runs after the first turn; the Cancel button works too."""
    worker_id = backend.create_worker(name="busy")
    open_worker(ui, backend, worker_id)
    send(ui, LONG)
    wait_status(ui, "running")
    send(ui, "second input")
    ui.wait_for_selector("[data-testid=composer-error]:has-text('worker_busy')")
    screenshot(ui, "worker-busy")
    ui.click("[data-testid=queue]")
    wait_entries(ui, 2)
    # The composer is emptied when the POST answers, which may come after the entry's event.
    ui.wait_for_function("() => document.querySelector('[data-testid=composer]').value === ''")
    wait_entries(ui, 4, timeout=30_000)
    wait_status(ui, "idle")
    # The queued input is entry 2 (accepted during the first turn), its reply entry 4.
    assert [e[2] for e in entries(ui)] == [LONG, "second input", LONG, "second input"]
    assert entries(ui) == api_entries(backend.transcript(worker_id))
    # The Cancel button, on a third turn.
    send(ui, LONG)
    wait_status(ui, "running")
    ui.wait_for_function("() => document.querySelector('[data-testid=live-reply]')?.textContent")
    ui.click("[data-testid=cancel]")
    ui.wait_for_selector("[data-testid=turn-note][data-outcome=cancelled]")
    wait_status(ui, "idle")


# -- streaming across reloads and tabs -------------------------------------------------------


def test_reload_mid_turn_resumes_with_no_gap_and_no_duplicate(ui: Any, backend: Backend) -> None:
    """Reloading while a reply streams shows the whole reply so far, then the rest, and the
    rendered transcript equals the Backend's (no entry twice)."""
    worker_id = backend.create_worker(name="reload")
    open_worker(ui, backend, worker_id)
    send(ui, LONG)
    ui.wait_for_function(
        "() => document.querySelector('[data-testid=live-reply]')?.textContent.length > 30"
    )
    ui.reload()
    ui.wait_for_selector("[data-testid=live-reply]")
    ui.wait_for_function(
        "() => document.querySelector('[data-testid=live-reply]')?.textContent.length > 40"
    )
    assert LONG.startswith(live_text(ui))
    wait_entries(ui, 2)
    wait_status(ui, "idle")
    rendered = entries(ui)
    assert rendered == api_entries(backend.transcript(worker_id))
    assert len({seq for _, seq, _ in rendered}) == len(rendered)
    assert ui.get_attribute("[data-role=assistant]", "data-streamed") == "match"
    assert stream_counts(ui)["max"] == 1


def test_a_turn_seen_by_the_previous_screen_still_shows_on_the_worker_screen(
    ui: Any, backend: Backend
) -> None:
    """A turn that completes after the Worker screen read the transcript but before it opened
    its own stream (the Workers screen's stream still open, and seeing it) shows in full: a
    new screen's stream never skips an event as already seen by another screen."""
    worker_id = backend.create_worker(profile="fast", name="between screens")
    row = f"[data-testid=worker-row][data-worker-id='{worker_id}']"
    ui.wait_for_selector(row)
    wait_state(ui, "live")
    workers_screen = ui.query_selector("yoi-workers")
    held: list[Any] = []
    ui.route("**/api/runtimes/backend-internal/diagnostics?*", lambda route: held.append(route))
    ui.click(row)
    while not held:  # the Worker screen has read the transcript and waits for this
        ui.wait_for_timeout(20)
    backend.api(
        "POST",
        f"/api/runtimes/backend-internal/workers/{worker_id}/input",
        {"content": "between screens"},
    )
    while len(backend.transcript(worker_id)) < 2:
        ui.wait_for_timeout(20)
    last = next(
        w["last_activity_at"]
        for w in backend.api("GET", "/api/workers")["workers"]
        if w["worker_id"] == worker_id
    )
    # The Workers screen, now off the page, has been handed the turn's last event.
    ui.wait_for_function(
        "([screen, seen]) => !!screen.querySelector(seen)",
        arg=[workers_screen, f"{row} [data-testid=last-activity][data-at='{last}']"],
    )
    held[0].continue_()
    ui.unroute("**/api/runtimes/backend-internal/diagnostics?*")
    wait_entries(ui, 2)
    assert entries(ui) == api_entries(backend.transcript(worker_id))


def test_two_tabs_each_keep_one_stream_and_see_the_same_turn(ui: Any, backend: Backend) -> None:
    """Two tabs on one Worker both stream the reply sent from one of them, each over a single
    event-stream connection, also after moving between screens."""
    worker_id = backend.create_worker(name="two tabs")
    other = ui.context.new_page()
    open_worker(ui, backend, worker_id)
    open_worker(other, backend, worker_id)
    send(ui, LONG)
    other.wait_for_function(
        "() => document.querySelector('[data-testid=live-reply]')?.textContent.length > 10"
    )
    for page in (ui, other):
        wait_entries(page, 2)
        wait_status(page, "idle")
        assert entries(page) == api_entries(backend.transcript(worker_id))
    other.click("nav a[href='/runtimes']")
    other.wait_for_selector("[data-testid=runtime-row]")
    other.click("nav a[href='/']")
    other.wait_for_selector("[data-testid=worker-row]")
    for page in (ui, other):
        counts = stream_counts(page)
        assert counts["max"] == 1, counts
        assert counts["live"] == 1, counts
    other.close()


def test_workers_screen_shows_last_activity_from_the_summary(ui: Any, backend: Backend) -> None:
    """Each Worker row shows the summary's last_activity_at; a turn moves it live (and the row
    to the top), and after a reload the row shows the stored value, the turn's last event."""
    quiet = backend.create_worker(profile="fast", name="quiet")
    busy = backend.create_worker(profile="fast", name="active")

    def summary(worker_id: str) -> str:
        rows = backend.api("GET", "/api/workers")["workers"]
        return str(next(w for w in rows if w["worker_id"] == worker_id)["last_activity_at"])

    def shown(worker_id: str) -> str:
        selector = f"[data-worker-id='{worker_id}'] [data-testid=last-activity]"
        return str(ui.get_attribute(selector, "data-at"))

    ui.goto(f"{backend.url}/")
    ui.wait_for_selector(f"[data-testid=worker-row][data-worker-id='{busy}']")
    wait_state(ui, "live")
    before = summary(busy)
    assert shown(busy) == before
    assert shown(quiet) == summary(quiet)
    base = f"/api/runtimes/backend-internal/workers/{busy}"
    backend.api("POST", f"{base}/input", {"content": "make some activity"})
    ui.wait_for_function(
        "([id, at]) => document.querySelector(`[data-worker-id='${id}'] "
        "[data-testid=last-activity]`)?.dataset.at > at",
        arg=[busy, before],
    )
    ui.wait_for_selector(f"[data-testid=worker-row][data-worker-id='{busy}'][data-status=idle]")
    ui.reload()
    ui.wait_for_selector(f"[data-testid=worker-row][data-worker-id='{busy}']")
    after = summary(busy)
    assert after > before
    assert after >= backend.transcript(busy)[-1]["at"]  # turn_completed follows the reply
    assert shown(busy) == after
    first = ui.get_attribute("[data-testid=worker-row]", "data-worker-id")
    assert first == busy


# -- safety and usability --------------------------------------------------------------------

PAYLOADS = [
    "<img src=x onerror=\"window.__xss='img'\">",
    "<script>window.__xss='script'</script>",
    "<svg onload=\"window.__xss='svg'\"></svg><a href=\"javascript:window.__xss='a'\">x</a>",
]


def test_xss_payloads_are_shown_as_text_and_never_run(ui: Any, backend: Backend) -> None:
    """Names, inputs and model output that look like HTML are rendered as text: no element is
    made from them and no script runs."""
    worker_id = backend.create_worker(name=PAYLOADS[0])
    open_worker(ui, backend, worker_id)
    for payload in PAYLOADS:
        send(ui, payload)
        wait_status(ui, "running", timeout=5_000)
        wait_status(ui, "idle")
    wait_entries(ui, 2 * len(PAYLOADS))
    assert [e[2] for e in entries(ui)] == [p for p in PAYLOADS for _ in (0, 1)]
    assert ui.inner_text("h1") == PAYLOADS[0]
    assert ui.evaluate("window.__xss") is None
    assert ui.locator("main img, main script, main svg, main a[href^=javascript]").count() == 0
    ui.goto(f"{ui.url.split('/runtimes/')[0]}/")
    ui.wait_for_selector(f"[data-worker-id='{worker_id}']")
    assert ui.inner_text(f"[data-worker-id='{worker_id}'] .name") == PAYLOADS[0]
    assert ui.evaluate("window.__xss") is None
    assert ui.locator("main img").count() == 0


def test_keyboard_shift_enter_adds_a_line_and_focus_is_visible(ui: Any, backend: Backend) -> None:
    """The composer is reachable by keyboard; Shift+Enter adds a newline, Enter sends; focused
    controls show an outline."""
    worker_id = backend.create_worker(profile="fast", name="keys")
    open_worker(ui, backend, worker_id)
    ui.focus("[data-testid=composer]")
    ui.keyboard.type("line one")
    ui.keyboard.press("Shift+Enter")
    ui.keyboard.type("line two")
    ui.keyboard.press("Enter")
    wait_entries(ui, 2)
    assert entries(ui)[0][2] == "line one\nline two"
    ui.keyboard.press("Shift+Tab")  # back to the transcript region
    ui.keyboard.press("Tab")
    outline = ui.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ui.evaluate("document.activeElement.dataset.testid") == "composer"
    assert outline != "none"
    for testid in ("composer", "send", "cancel", "stop"):
        label = ui.evaluate(
            "id => { const n = document.querySelector(`[data-testid=${id}]`);"
            " return (n.labels && n.labels[0]?.textContent) || n.textContent; }",
            testid,
        )
        assert label.strip(), testid


def test_no_layout_break_at_360_px_in_both_themes(browser: Any, backend: Backend) -> None:
    """At 360 px wide nothing overflows sideways on any screen, in the light and the dark
    scheme (prefers-color-scheme picks the theme)."""
    worker_id = backend.create_worker(name="a rather long worker name " * 3)
    backgrounds = set()
    for scheme in ("light", "dark"):
        context, watch = new_context(
            browser, backend.url, viewport={"width": 360, "height": 740}, color_scheme=scheme
        )
        page = context.new_page()
        page.goto(backend.link)
        page.wait_for_selector("yoi-workers h1")
        for path, ready in (
            ("/", "[data-testid=worker-row]"),
            ("/runtimes", "[data-testid=runtime-row]"),
            ("/new", "[data-testid=create]"),
            (f"/runtimes/backend-internal/workers/{worker_id}", "[data-testid=composer]"),
        ):
            page.goto(backend.url + path)
            page.wait_for_selector(ready)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, (path, scheme, width)
        backgrounds.add(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        screenshot(page, f"worker-360-{scheme}")
        watch.check(context.pages)
        context.close()
    assert len(backgrounds) == 2


def test_a_long_transcript_opens_on_its_latest_page(ui: Any, backend: Backend) -> None:
    """A Worker with more entries than a page renders only the latest page, and 'load earlier'
    adds the previous one above it."""
    worker_id = backend.create_worker(name="long")
    path = f"/api/runtimes/backend-internal/workers/{worker_id}/input"
    for i in range(250):
        backend.api("POST", path, {"kind": "system", "content": f"note {i}"})
    open_worker(ui, backend, worker_id)
    shown = entries(ui)
    assert len(shown) == 100
    assert shown[0][1] == 151
    assert shown[-1] == ("system", 250, "note 249")
    ui.click("[data-testid=load-earlier]")
    wait_entries(ui, 200)
    assert entries(ui)[0][1] == 51
    ui.click("[data-testid=load-earlier]")
    wait_entries(ui, 250)
    assert [e[1] for e in entries(ui)] == list(range(1, 251))
    assert ui.is_hidden("[data-testid=load-earlier]")


def test_deep_links_survive_a_reload(ui: Any, backend: Backend) -> None:
    """Every console route is served the app shell, so reloading any of them shows that
    screen; the Runtimes screen shows the embedded runtime's row."""
    worker_id = backend.create_worker(name="deep")
    for path, ready in (
        ("/runtimes", "[data-testid=runtime-row][data-runtime-id=backend-internal]"),
        ("/new", "[data-testid=create]"),
        (f"/runtimes/backend-internal/workers/{worker_id}", "[data-testid=composer]"),
        ("/", f"[data-testid=worker-row][data-worker-id='{worker_id}']"),
    ):
        ui.goto(backend.url + path)
        ui.wait_for_selector(ready)
        ui.reload()
        ui.wait_for_selector(ready)
    ui.goto(f"{backend.url}/runtimes")
    ui.wait_for_selector("[data-testid=runtime-row][data-status=running]")
    screenshot(ui, "runtimes")
