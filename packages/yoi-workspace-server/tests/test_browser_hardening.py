"""The rest of the browser trust boundary, on real processes and sockets: no CORS (preflights
included), the security headers on API, error, stream and HTML responses, safe remote
registration, the failed-login slow-down, reverse-proxy settings, and the leak scan of the
session and login routes."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from yoi_workspace_server.sessions import FailedLogins, Sessions
from yoi_workspace_server.trust import HTML_CSP, TrustBoundary, TrustSettings

from . import _boundary as _h

EMB, Backend, backend, error, workers = _h.EMB, _h.Backend, _h.backend, _h.error, _h.workers


COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def assert_secured(response: httpx.Response, *, api: bool, html: bool = False) -> None:
    for name, value in COMMON.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    assert (response.headers.get("cache-control") == "no-store") is api or not api
    if api:
        assert response.headers.get_list("cache-control") == ["no-store"]
    if html:
        assert response.headers.get_list("content-security-policy") == [HTML_CSP]
    assert not any(k.lower().startswith("access-control-") for k in response.headers)


def test_no_cors_even_for_preflights(tmp_path: Path) -> None:
    """No response carries an Access-Control-* header: a cross-origin preflight is 403
    origin_not_allowed, a plain OPTIONS is 401 without credentials and 405 with them, and a
    cross-origin GET with credentials is answered without any CORS grant."""
    with backend(tmp_path / "data") as b:
        ok = b.authed()
        seen: list[httpx.Response] = []
        for origin in ("http://evil.example", f"http://127.0.0.1:{b.port + 1}", "null"):
            for path in ("/api/runtimes", f"{EMB}/workers", "/api/session", "/"):
                r = b.client().options(
                    path,
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "content-type, authorization",
                    },
                )
                error(r, 403, "origin_not_allowed")
                seen.append(r)
            r = ok.get("/api/runtimes", headers={"Origin": origin})
            assert r.status_code == 200
            seen.append(r)
        error(b.client().options("/api/runtimes"), 401, "unauthorized")
        error(ok.options("/api/runtimes"), 405, "method_not_allowed")
        seen += [b.client().options("/api/runtimes"), ok.options("/api/runtimes")]
        for r in seen:
            assert not any(k.lower().startswith("access-control-") for k in r.headers), r.headers


def test_security_headers_on_api_error_and_stream_responses(tmp_path: Path) -> None:
    """nosniff, no-referrer and X-Frame-Options DENY on every response; Cache-Control
    no-store on /api (successes, every refusal, the SSE stream); not on /healthz."""
    with backend(tmp_path / "data") as b:
        ok = b.authed()
        wid = ok.post(f"{EMB}/workers", json={}).json()["worker"]["worker_id"]
        api_responses = [
            ok.get("/api/runtimes"),
            ok.get(f"{EMB}/workers/{wid}"),
            ok.get(f"{EMB}/workers/nope"),  # 404 from the app
            ok.post(
                f"{EMB}/workers", content=b"{bad", headers={"content-type": "application/json"}
            ),
            b.client().get("/api/workers"),  # 401
            b.client(Host="evil.example").get("/api/workers"),  # 403 host
            ok.post(f"{EMB}/workers", json={}, headers={"Origin": "http://evil.example"}),  # 403
            ok.post(f"{EMB}/workers", content=b"x", headers={"content-type": "text/plain"}),  # 415
            ok.post(
                f"{EMB}/workers",
                content=b"x" * (1024 * 1024 + 1),
                headers={"content-type": "application/json"},
            ),
            b.client().post("/api/session", json={"token": b.token}),
            b.client().get("/api/session"),
        ]
        assert [r.status_code for r in api_responses] == [
            200, 200, 404, 400, 401, 403, 403, 415, 413, 201, 200,
        ]  # fmt: skip
        for r in api_responses:
            assert_secured(r, api=True)
        with ok.stream("GET", f"{EMB}/workers/{wid}/events") as stream:
            assert stream.status_code == 200
            assert_secured(stream, api=True)
        for r in (b.client().get("/healthz"), b.client().get("/nothing-here")):
            assert_secured(r, api=False)
            assert "no-store" not in r.headers.get("cache-control", "")


@contextmanager
def serve(app: object) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback socket, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_html_responses_get_the_csp_whatever_the_app_set() -> None:
    """An HTML response behind the boundary (the console's files: open, no credentials) gets
    the CSP default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'
    (replacing a weaker one the app set), the common headers, and loses any CORS header the
    app set; non-HTML static files get the common headers and no CSP."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><title>console</title>",
            headers={
                "Content-Security-Policy": "default-src *; script-src 'unsafe-inline'",
                "Access-Control-Allow-Origin": "*",
                "X-Frame-Options": "ALLOWALL",
            },
        )

    async def script(request: Request) -> PlainTextResponse:
        return PlainTextResponse("export {};", media_type="text/javascript")

    inner = Starlette(routes=[Route("/", page), Route("/app.js", script)])
    settings = TrustSettings(token="t" * 32)
    db = sqlite3.connect(":memory:")
    sessions = Sessions(db, idle_s=60, max_s=600)
    boundary = TrustBoundary(inner, settings, sessions, FailedLogins())
    with closing(db), serve(boundary) as url, httpx.Client(base_url=url) as c:
        r = c.get("/")
        assert r.status_code == 200
        assert_secured(r, api=False, html=True)
        assert "no-store" not in r.headers.get("cache-control", "")
        js = c.get("/app.js")
        assert js.status_code == 200
        assert_secured(js, api=False)
        assert "content-security-policy" not in js.headers
        error(c.get("/", headers={"Host": "evil.example"}), 403, "host_not_allowed")


REFUSED_URLS = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.169.254.:80/",
    "http://169.254.0.1:38800",
    "http://2852039166/",  # 169.254.169.254 as one integer
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[fe80::1]:38800",
    "http://[fe80::1%25eth0]:38800",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.google.internal./",
    "http://100.100.100.200/",
    "http://user:secret@127.0.0.1:38800",
    "http://@127.0.0.1:38800",
    "http://127.0.0.1:38800/?x=1",
    "http://127.0.0.1:38800/?",
    "http://127.0.0.1:38800/#frag",
    "http://127.0.0.1:38800#",
    "ftp://127.0.0.1/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http:///nohost",
    "http://",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:0",
    "http://exa mple.test/",
    "http://bad_host!.test/",
    "127.0.0.1:38800",
]


def test_refused_registration_urls_store_nothing(tmp_path: Path) -> None:
    """POST /api/runtimes refuses every base_url that is not plain http(s) with a host, or
    that carries userinfo, a query or a fragment, or points at a link-local or cloud metadata
    address in any spelling, with 400 invalid_input; nothing is registered or stored, even
    after a restart; a plain loopback URL is accepted."""
    data = tmp_path / "data"
    with backend(data) as b:
        ok = b.authed()
        for i, url in enumerate(REFUSED_URLS):
            body = {"runtime_id": f"r{i}", "base_url": url, "token": "remote-token-xyz"}
            r = ok.post("/api/runtimes", json=body)
            err = error(r, 400, "invalid_input")
            assert err["details"]["field"] == "base_url", (url, err)
            assert "secret" not in r.text
        assert [r["runtime_id"] for r in ok.get("/api/runtimes").json()["runtimes"]] == [
            "backend-internal"
        ]
        fine = {"runtime_id": "fine", "base_url": "http://127.0.0.1:9", "token": "remote-token-x"}
        assert ok.post("/api/runtimes", json=fine).status_code == 201
    db = sqlite3.connect(data / "backend.sqlite3")
    rows = db.execute("SELECT runtime_id FROM remote_runtimes").fetchall()
    db.close()
    assert rows == [("fine",)]
    with backend(data) as b:
        ids = [r["runtime_id"] for r in b.authed().get("/api/runtimes").json()["runtimes"]]
        assert ids == ["backend-internal", "fine"]


def test_a_refused_remote_in_the_config_stops_the_start(tmp_path: Path) -> None:
    """A [[remote]] whose base_url is a metadata address exits 1 with a one-line reason."""
    token = tmp_path / "remote.token"
    token.write_text("remote-token-0123456789")
    config = tmp_path / "backend.toml"
    config.write_text(
        '[[remote]]\nruntime_id = "meta"\nbase_url = "http://169.254.169.254"\n'
        f'token_file = "{token}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "yoi_workspace_server.cli", "--bind", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "link-local or cloud metadata" in result.stderr


def test_a_burst_of_failures_is_slowed_but_an_open_session_is_not(tmp_path: Path) -> None:
    """Each failed sign-in and bad token is logged without its value; past the budget the
    client gets 429 too_many_requests with Retry-After instead of 401, while a session opened
    before, the right bearer token and the right sign-in still work."""
    with backend(tmp_path / "data", "--failed-login-budget", "3") as b:
        token = b.token
        sid = b.client().post("/api/session", json={"token": token}).cookies["yoi_session"]
        attacker = b.client()
        guesses = [f"guess-number-{i:04d}-abcdef" for i in range(8)]
        answers = []
        for i, guess in enumerate(guesses):
            if i % 2:
                answers.append(attacker.post("/api/session", json={"token": guess}))
            else:
                answers.append(
                    attacker.get("/api/runtimes", headers={"Authorization": f"Bearer {guess}"})
                )
        assert [r.status_code for r in answers] == [401, 401, 401, 429, 429, 429, 429, 429]
        limited = error(answers[-1], 429, "too_many_requests")
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 61
        assert limited["details"]["retry_after_s"] == int(answers[-1].headers["retry-after"])
        error(attacker.get("/api/session", headers={"Authorization": "Bearer x"}),
              429, "too_many_requests")  # fmt: skip
        # The rightful user is never locked out.
        mine = b.client(Cookie=f"yoi_session={sid}")
        assert mine.get("/api/runtimes").status_code == 200
        assert mine.post(f"{EMB}/workers", json={}).status_code == 201
        assert b.authed().get("/api/runtimes").status_code == 200
        again = b.client().post("/api/session", json={"token": token})
        assert again.status_code == 201
        # No credentials at all is not a failed sign-in: still a plain 401.
        error(b.client().get("/api/runtimes"), 401, "unauthorized")
        assert workers(b) == 1
        logs = b.logs()
    assert logs.count("refused a bad token") == 5
    assert logs.count("refused a failed sign-in") == 4
    for guess in guesses:
        assert guess not in logs
    assert token not in logs
    assert sid not in logs


def test_behind_a_tls_reverse_proxy(tmp_path: Path) -> None:
    """--public-url https://NAME allows that Host, makes its origin the Backend's own (an
    http:// Origin for it is refused), marks the session cookie Secure, and is the console
    link's base; X-Forwarded-Proto is never trusted; allowed_hosts in --config is honoured."""
    config = tmp_path / "backend.toml"
    config.write_text('allowed_hosts = ["cfg.example.test"]\n')
    public = "https://yoi.example.test"
    with backend(tmp_path / "data", "--public-url", public, "--config", str(config)) as b:
        assert b.printed[1] == f"open the console: {public}/#token={b.token}"
        proxied = b.client(Host="yoi.example.test", Origin=public)
        signed_in = proxied.post("/api/session", json={"token": b.token})
        assert signed_in.status_code == 201, signed_in.text
        parts = [p.strip() for p in signed_in.headers["set-cookie"].split(";")]
        assert "Secure" in parts
        sid = parts[0].partition("=")[2]
        c = b.client(Host="yoi.example.test", Origin=public, Cookie=f"yoi_session={sid}")
        assert c.post(f"{EMB}/workers", json={}).status_code == 201
        plain = b.client(Host="yoi.example.test", Origin="http://yoi.example.test",
                         Cookie=f"yoi_session={sid}")  # fmt: skip
        error(plain.post(f"{EMB}/workers", json={}), 403, "origin_not_allowed")
        spoof = b.client(
            Host="yoi.example.test",
            Origin="https://yoi.example.test:8443",
            Cookie=f"yoi_session={sid}",
            **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "yoi.example.test:8443"},
        )
        error(spoof.post(f"{EMB}/workers", json={}), 403, "origin_not_allowed")
        assert (
            b.authed().get("/api/runtimes", headers={"Host": "cfg.example.test"}).status_code == 200
        )
        error(b.authed().get("/api/runtimes", headers={"Host": "other.example.test"}),
              403, "host_not_allowed")  # fmt: skip
        assert workers(b) == 1
    bad = subprocess.run(
        [sys.executable, "-m", "yoi_workspace_server.cli", "--bind", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--public-url", "ftp://x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1


def test_the_session_and_login_routes_leak_nothing(tmp_path: Path) -> None:
    """No response of the session and login routes (success or refusal of every kind) and no
    log line carries the browser token, a session id other than in the Set-Cookie that
    creates it, or the data directory's path."""
    data = tmp_path / "data"
    with backend(data, "--failed-login-budget", "2") as b:
        token = b.token
        responses: list[httpx.Response] = []
        c = b.client()
        responses.append(c.post("/api/session", json={"token": token}))
        sid = responses[-1].cookies["yoi_session"]
        cookie = {"Cookie": f"yoi_session={sid}"}
        responses += [
            b.client(**cookie).get("/api/session"),
            b.authed().get("/api/session"),
            b.client().get("/api/session"),
            b.client().post("/api/session", json={"token": token + "x"}),
            b.client().post("/api/session", json={"token": token[:-1]}),
            b.client().post("/api/session", json={"token": token, "extra": token}),
            b.client().post("/api/session", content=token, headers={"content-type": "text/plain"}),
            b.client(Host="evil.example").post("/api/session", json={"token": token}),
            b.client(Origin="http://evil.example").post("/api/session", json={"token": token}),
            b.client().post("/api/session", json={"token": "x" * 5000}),
            b.client(Authorization=f"Bearer {token}z").get("/api/session"),
            b.client(**cookie).delete("/api/session"),
            b.client(**cookie).get("/api/runtimes"),
            b.client(**cookie).delete("/api/session"),
        ]
        assert responses[0].status_code == 201
        logs = b.logs()
    for i, r in enumerate(responses):
        text = str(dict(r.headers)) + r.text
        assert token not in text, i
        assert str(tmp_path) not in text, i
        if i:
            assert sid not in text, i
    assert token not in logs
    assert sid not in logs
    assert str(data) not in logs


def test_a_rotated_token_ends_every_session(tmp_path: Path) -> None:
    """A session survives a restart with the same token, and ends when the Backend restarts
    with another one (the old token is refused too)."""
    data, token_file = tmp_path / "data", tmp_path / "browser.token"
    token_file.write_text("first-token-0123456789abcdef")
    with backend(data, "--token-file", str(token_file)) as b:
        r = b.client().post("/api/session", json={"token": "first-token-0123456789abcdef"})
        sid = r.cookies["yoi_session"]
    with backend(data, "--token-file", str(token_file)) as b:
        assert b.client(Cookie=f"yoi_session={sid}").get("/api/runtimes").status_code == 200
    token_file.write_text("second-token-0123456789abcdef")
    with backend(data, "--token-file", str(token_file)) as b:
        error(b.client(Cookie=f"yoi_session={sid}").get("/api/runtimes"), 401, "unauthorized")
        old = b.client(Authorization="Bearer first-token-0123456789abcdef")
        error(old.get("/api/runtimes"), 401, "unauthorized")
        new = b.client(Authorization="Bearer second-token-0123456789abcdef")
        assert new.get("/api/runtimes").status_code == 200
        assert "every browser session was ended" in b.logs()


def test_signing_out_ends_the_streams_open_under_that_session(tmp_path: Path) -> None:
    """DELETE /api/session ends, at once, an event stream opened with that session's cookie
    (the response is finished cleanly, nothing is logged as an error), while a stream of
    another session and one signed in by bearer token stay open; reconnecting with the old
    cookie is 401."""
    with backend(tmp_path / "data") as b:
        token = b.token
        wid = b.authed().post(f"{EMB}/workers", json={}).json()["worker"]["worker_id"]
        events = f"{EMB}/workers/{wid}/events"
        first = b.client().post("/api/session", json={"token": token}).cookies["yoi_session"]
        second = b.client().post("/api/session", json={"token": token}).cookies["yoi_session"]
        mine = b.client(Cookie=f"yoi_session={first}")
        theirs = b.client(Cookie=f"yoi_session={second}")
        with (
            mine.stream("GET", events) as ending,
            theirs.stream("GET", events) as staying,
            b.authed().stream("GET", events) as by_bearer,
        ):
            lines = {}
            for response in (ending, staying, by_bearer):
                assert response.status_code == 200
                lines[id(response)] = response.iter_lines()
                assert next(lines[id(response)]).startswith("retry:")
            out = b.client(Cookie=f"yoi_session={first}").delete("/api/session")
            assert out.status_code == 200
            rest = list(lines[id(ending)])  # returns: the stream has ended
            assert all('"kind"' not in line for line in rest)
            sent = b.authed().post(f"{EMB}/workers/{wid}/input", json={"content": "still here"})
            assert sent.status_code == 200
            for response in (staying, by_bearer):
                seen = []
                for line in lines[id(response)]:
                    seen.append(line)
                    if line.startswith("data: ") and "input_accepted" in line:
                        break
                assert "input_accepted" in seen[-1], seen
        error(mine.get(events), 401, "unauthorized")
        logs = b.logs()
    assert '"level": "error"' not in logs
