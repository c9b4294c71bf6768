"""The browser trust boundary of a real Workspace Backend process on loopback: the token,
the console link, sessions, the Host allow-list, cross-site writes and JSON-only bodies, each
refusal with its exact status and code."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

from . import _boundary as _h

EMB, Backend, backend, error, workers = _h.EMB, _h.Backend, _h.backend, _h.error, _h.workers


def test_every_api_route_and_stream_needs_the_token(tmp_path: Path) -> None:
    """Without credentials, with a wrong token, another scheme or an unknown session cookie,
    every /api route and stream is 401 unauthorized (with WWW-Authenticate: Bearer); the
    Bearer scheme matches in any case; /healthz and non-API paths need nothing."""
    with backend(tmp_path / "data", "--failed-login-budget", "1000") as b:
        ok = b.authed()
        wid = ok.post(f"{EMB}/workers", json={"name": "a"}).json()["worker"]["worker_id"]
        routes = [
            ("GET", "/api/runtimes", None),
            ("POST", "/api/runtimes", {"runtime_id": "x", "base_url": "http://127.0.0.1:9"}),
            ("GET", EMB, None),
            ("DELETE", "/api/runtimes/some-remote", None),
            ("GET", "/api/workers", None),
            ("GET", f"{EMB}/workers", None),
            ("POST", f"{EMB}/workers", {"name": "b"}),
            ("GET", f"{EMB}/workers/{wid}", None),
            ("POST", f"{EMB}/workers/{wid}/input", {"content": "hi"}),
            ("POST", f"{EMB}/workers/{wid}/stop", {}),
            ("POST", f"{EMB}/workers/{wid}/cancel", {}),
            ("GET", f"{EMB}/workers/{wid}/transcript", None),
            ("GET", f"{EMB}/workers/{wid}/events", None),
            ("GET", "/api/no-such-route", None),
            ("GET", "/openapi.json", None),
        ]
        bad_credentials: list[dict[str, str]] = [
            {},
            {"Authorization": "Bearer wrong-token-wrong-token"},
            {"Authorization": f"Bearer {b.token}x"},
            {"Authorization": f"Basic {b.token}"},
            {"Authorization": b.token},
            {"Authorization": "Bearer"},
            {"Cookie": "yoi_session=not-a-session"},
            {"Cookie": f"yoi_session={b.token}"},
        ]
        for creds in bad_credentials:
            c = b.client(**creds)
            for method, path, body in routes:
                r = c.request(method, path, json=body)
                error(r, 401, "unauthorized")
                assert r.headers["www-authenticate"] == "Bearer"
        assert workers(b) == 1
        assert ok.get(f"{EMB}/workers/{wid}").json()["worker"]["status"] == "idle"
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            r = b.client(Authorization=f"{scheme} {b.token}").get("/api/runtimes")
            assert r.status_code == 200, r.text
        anonymous = b.client()
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/").status_code == 200  # the console's files are open
        assert anonymous.get("/api/session").json()["authenticated"] is False
        # A refused token is logged, but never its value.
        assert "refused a bad token" in b.logs()
    assert b.token not in b.logs()
    assert "wrong-token-wrong-token" not in b.logs()


def test_a_generated_token_is_kept_reused_and_printed_as_a_link(tmp_path: Path) -> None:
    """With no token configured, the first start writes <data-dir>/backend.token (0600, in a
    0700 directory) and prints the console link with the token in the fragment and the
    file's path; a restart reuses the token; no log line holds it."""
    data = tmp_path / "data"
    with backend(data) as b:
        token = b.token
        assert len(token) >= 32
        path = data / "backend.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert b.printed[0] == f"yoi workspace backend listening on {b.url}"
        assert b.printed[1] == f"open the console: {b.url}/#token={token}"
        assert b.printed[2] == f"browser token file: {path}"
        assert b.authed().get("/api/runtimes").status_code == 200
        first_logs = b.logs()
    with backend(data) as b:
        assert b.token == token
        assert b.printed[1] == f"open the console: {b.url}/#token={token}"
        assert b.authed().get("/api/runtimes").status_code == 200
        assert token not in b.logs()
    assert token not in first_logs


def test_a_configured_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    """--token-file and --token-env set the token (no file is generated); the link carries
    it; a token shorter than 16 characters or an empty one stops the start with exit 1."""
    token_file = tmp_path / "browser.token"
    token_file.write_text("file-token-0123456789-abcdef\n")
    with backend(tmp_path / "a", "--token-file", str(token_file)) as b:
        assert b.printed[1].endswith("/#token=file-token-0123456789-abcdef")
        assert b.printed[2] == f"browser token file: {token_file}"
        auth = {"Authorization": "Bearer file-token-0123456789-abcdef"}
        assert b.client(**auth).get("/api/runtimes").status_code == 200
        assert not (tmp_path / "a" / "backend.token").exists()
    env = {"YOI_TEST_TOKEN": "env-token-0123456789-abcdef"}
    with backend(tmp_path / "b", "--token-env", "YOI_TEST_TOKEN", env=env) as b:
        assert b.printed[1].endswith("/#token=env-token-0123456789-abcdef")
        assert "YOI_TEST_TOKEN" in b.printed[2]
        auth = {"Authorization": "Bearer env-token-0123456789-abcdef"}
        assert b.client(**auth).get("/api/runtimes").status_code == 200
        error(b.client(Authorization="Bearer other").get("/api/runtimes"), 401, "unauthorized")
    short = tmp_path / "short.token"
    short.write_text("too-short")
    for args in (["--token-file", str(short)], ["--token-env", "YOI_UNSET_TOKEN_VAR"]):
        result = subprocess.run(
            [sys.executable, "-m", "yoi_workspace_server.cli", "--bind", "127.0.0.1:0",
             "--data-dir", str(tmp_path / "c"), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result
        assert "too-short" not in result.stderr


def test_evil_hosts_are_refused_with_and_without_credentials(tmp_path: Path) -> None:
    """A Host that is not localhost, 127.0.0.1, [::1] (any port), the bound host or an
    --allowed-host name is 403 host_not_allowed on every route but /healthz, with or without
    credentials; the allowed ones pass."""
    with backend(tmp_path / "data", "--allowed-host", "yoi.example.test") as b:
        auth = {"Authorization": f"Bearer {b.token}"}
        session = b.client().post("/api/session", json={"token": b.token})
        cookie = {"Cookie": f"yoi_session={session.cookies['yoi_session']}"}
        evil = [
            "evil.example", "attacker.test:8700", f"evil.example:{b.port}",
            "localhost.evil.example", "127.0.0.1.nip.io", "example.test", "yoi.example.test.evil",
            "", "local host",
            "user@localhost", "[::2]", "0.0.0.0", "127.0.0.2",
        ]  # fmt: skip
        for host in evil:
            for creds in ({}, auth, cookie):
                c = b.client(**creds, Host=host)
                for method, path in [
                    ("GET", "/api/runtimes"),
                    ("GET", f"{EMB}/workers"),
                    ("POST", f"{EMB}/workers"),
                    ("GET", "/api/session"),
                    ("POST", "/api/session"),
                    ("GET", "/"),
                    ("GET", "/index.html"),
                ]:
                    body = {"token": b.token} if path == "/api/session" else {}
                    error(c.request(method, path, json=body), 403, "host_not_allowed")
            assert b.client(Host=host).get("/healthz").status_code == 200
        assert workers(b) == 0
        for host in [
            "localhost", "LOCALHOST:1", "localhost.", "127.0.0.1", f"127.0.0.1:{b.port}",
            "[::1]", "[::1]:9", "yoi.example.test", "YOI.example.test:443",
        ]:  # fmt: skip
            r = b.client(**auth, Host=host).get("/api/runtimes")
            assert r.status_code == 200, (host, r.text)


def test_cross_site_writes_are_refused_and_change_nothing(tmp_path: Path) -> None:
    """A write whose Origin is another origin (another port, another scheme, another host,
    "null") or that carries Sec-Fetch-Site cross-site or same-site is 403 origin_not_allowed
    even with valid credentials, and nothing changes; same-origin writes and writes with
    neither header go through."""
    with backend(tmp_path / "data") as b:
        token = b.token
        auth = {"Authorization": f"Bearer {token}"}
        sid = b.client().post("/api/session", json={"token": token}).cookies["yoi_session"]
        cookie = {"Cookie": f"yoi_session={sid}"}
        ok = b.authed()
        wid = ok.post(f"{EMB}/workers", json={"name": "keep"}).json()["worker"]["worker_id"]
        own = f"http://127.0.0.1:{b.port}"
        shapes: list[dict[str, str]] = [
            {"Origin": "http://evil.example"},
            {"Origin": f"http://127.0.0.1:{b.port + 1}"},
            {"Origin": f"http://localhost:{b.port + 1}"},
            {"Origin": f"http://localhost:{b.port}"},  # another host name: another origin
            {"Origin": f"https://127.0.0.1:{b.port}"},
            {"Origin": "null"},
            {"Origin": "garbage"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
            {"Origin": own, "Sec-Fetch-Site": "cross-site"},
        ]
        writes = [
            ("POST", f"{EMB}/workers", {"name": "csrf"}),
            ("POST", f"{EMB}/workers/{wid}/input", {"content": "spend my budget"}),
            ("POST", f"{EMB}/workers/{wid}/stop", {}),
            ("POST", f"{EMB}/workers/{wid}/cancel", {}),
            ("POST", "/api/runtimes", {"runtime_id": "evil", "base_url": "http://127.0.0.1:9"}),
            ("DELETE", "/api/runtimes/evil", None),
            ("POST", "/api/session", {"token": token}),
            ("DELETE", "/api/session", None),
            ("PUT", f"{EMB}/workers", {}),
            ("PATCH", f"{EMB}/workers", {}),
        ]
        for shape in shapes:
            for creds in ({}, auth, cookie):
                c = b.client(**creds, **shape)
                for method, path, body in writes:
                    r = c.request(method, path, json=body)
                    error(r, 403, "origin_not_allowed")
                    assert "set-cookie" not in r.headers
                # text/plain is a "simple request" a page sends without a preflight.
                r = c.post(f"{EMB}/workers", content=b"{}", headers={"content-type": "text/plain"})
                error(r, 403, "origin_not_allowed")
        assert workers(b) == 1
        detail = ok.get(f"{EMB}/workers/{wid}").json()["worker"]
        assert (detail["status"], detail["transcript_len"]) == ("idle", 0)
        assert [r["runtime_id"] for r in ok.get("/api/runtimes").json()["runtimes"]] == [
            "backend-internal"
        ]
        assert b.client(**cookie).get("/api/session").json()["authenticated"] is True
        # A cross-site read of the API is refused too; a same-origin one passes.
        error(b.client(**cookie, **{"Sec-Fetch-Site": "cross-site"}).get("/api/workers"),
              403, "origin_not_allowed")  # fmt: skip
        same = b.client(**cookie, Origin=own, **{"Sec-Fetch-Site": "same-origin"})
        assert same.post(f"{EMB}/workers", json={"name": "mine"}).status_code == 201
        assert b.client(**auth).post(f"{EMB}/workers", json={}).status_code == 201
        none = b.client(**auth, **{"Sec-Fetch-Site": "none"})
        assert none.post(f"{EMB}/workers", json={}).status_code == 201
        via_localhost = b.client(**auth, Host=f"localhost:{b.port}")
        r = via_localhost.post(
            f"{EMB}/workers", json={}, headers={"Origin": f"http://localhost:{b.port}"}
        )
        assert r.status_code == 201, r.text
        assert workers(b) == 5


def test_json_routes_refuse_other_content_types(tmp_path: Path) -> None:
    """A JSON route refuses text/plain, forms, multipart, other JSON-ish types, another charset
    and an untyped body with 415 unsupported_media_type (nothing is created), and accepts
    application/json with or without charset=utf-8 (and no body at all where the body is
    optional)."""
    with backend(tmp_path / "data") as b:
        c = b.authed()
        wid = c.post(f"{EMB}/workers", json={}).json()["worker"]["worker_id"]
        refused = [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "application/vnd.api+json",
            "application/jsonx",
            "text/json",
            "application/json; charset=latin-1",
            "",
        ]
        for path in [
            f"{EMB}/workers",
            f"{EMB}/workers/{wid}/input",
            f"{EMB}/workers/{wid}/stop",
            "/api/runtimes",
        ]:
            for ctype in refused:
                r = c.post(path, content=b'{"content": "x"}', headers={"content-type": ctype})
                error(r, 415, "unsupported_media_type")
            r = c.post(path, content=b'{"content": "x"}')  # a body with no type
            assert "content-type" not in r.request.headers
            error(r, 415, "unsupported_media_type")
        r = b.client().post(
            "/api/session",
            content=json.dumps({"token": b.token}),
            headers={"content-type": "text/plain"},
        )
        error(r, 415, "unsupported_media_type")
        assert "set-cookie" not in r.headers
        assert workers(b) == 1
        assert c.get(f"{EMB}/workers/{wid}").json()["worker"]["transcript_len"] == 0
        for ctype in ("application/json", "application/json; charset=utf-8",
                      "Application/JSON; Charset=UTF-8"):  # fmt: skip
            r = c.post(f"{EMB}/workers", content=b"{}", headers={"content-type": ctype})
            assert r.status_code == 201, (ctype, r.text)
        assert c.post(f"{EMB}/workers").status_code == 201  # no body, no type: optional body
        assert c.post(f"{EMB}/workers/{wid}/cancel").status_code == 200


def test_the_session_lifecycle(tmp_path: Path) -> None:
    """Sign-in with the token sets an HttpOnly, SameSite=Strict session cookie holding a random
    id (never the token; only its hash is stored); the cookie works for the API and SSE and
    survives a Backend restart; sign-out ends it at once; a wrong token is 401."""
    data = tmp_path / "data"
    with backend(data) as b:
        token = b.token
        anon = b.client()
        error(anon.post("/api/session", json={"token": "wrong-wrong-wrong"}), 401, "unauthorized")
        error(anon.post("/api/session", json={}), 400, "invalid_input")
        as_json = {"content-type": "application/json"}
        error(anon.post("/api/session", content=b"{no", headers=as_json), 400, "invalid_input")
        r = anon.post("/api/session", json={"token": token})
        assert r.status_code == 201, r.text
        assert r.json()["authenticated"] is True
        assert r.json()["method"] == "cookie"
        set_cookie = r.headers["set-cookie"]
        parts = [p.strip() for p in set_cookie.split(";")]
        name, _, sid = parts[0].partition("=")
        assert name == "yoi_session"
        assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(parts)
        assert "Secure" not in parts  # plain http on loopback
        assert token not in set_cookie
        assert len(sid) >= 32
        cookie = {"Cookie": f"yoi_session={sid}"}
        c = b.client(**cookie)
        assert c.get("/api/session").json()["authenticated"] is True
        created = c.post(f"{EMB}/workers", json={"name": "by-cookie"})
        assert created.status_code == 201, created.text
        worker = created.json()["worker"]
        path = f"{EMB}/workers/{worker['worker_id']}"
        assert c.post(f"{path}/input", json={"content": "over sse"}).status_code == 200
        kinds = []
        with c.stream("GET", f"{path}/events", params={"cursor": worker["last_cursor"]}) as s:
            assert s.status_code == 200
            for line in s.iter_lines():
                if line.startswith("data: "):
                    kinds.append(json.loads(line[6:])["kind"])
                    if kinds[-1] == "turn_completed":
                        break
        assert kinds[-1] == "turn_completed"
        assert b.client().get("/api/session").json() == {
            "authenticated": False, "method": None, "expires_at": None,
        }  # fmt: skip
        assert b.authed().get("/api/session").json()["method"] == "bearer"
        other = b.client().post("/api/session", json={"token": token}).cookies["yoi_session"]
    stored = sqlite3.connect(data / "backend.sqlite3")
    dump = "\n".join(stored.iterdump())
    stored.close()
    for secret in (sid, token, other):
        assert secret not in dump
    with backend(data) as b:  # the sessions survive the restart
        c = b.client(**cookie)
        assert c.get("/api/session").json()["authenticated"] is True
        assert c.get(f"{path}/transcript").status_code == 200
        out = c.delete("/api/session")
        assert out.status_code == 200
        assert out.json()["authenticated"] is False
        assert "Max-Age=0" in out.headers["set-cookie"]
        error(c.get("/api/runtimes"), 401, "unauthorized")
        error(c.get(f"{path}/events"), 401, "unauthorized")
        assert c.get("/api/session").json()["authenticated"] is False
        # The other browser's session is untouched.
        assert b.client(Cookie=f"yoi_session={other}").get("/api/runtimes").status_code == 200
        # A new sign-in from a browser replaces the session that browser carried.
        fresh = b.client(Cookie=f"yoi_session={other}").post("/api/session", json={"token": token})
        assert fresh.status_code == 201
        error(b.client(Cookie=f"yoi_session={other}").get("/api/runtimes"), 401, "unauthorized")
        other = fresh.cookies["yoi_session"]
        assert b.client(Cookie=f"yoi_session={other}").get("/api/runtimes").status_code == 200
        # A bearer caller has no session to end: it stays signed in by its header.
        assert b.authed().delete("/api/session").json()["method"] == "bearer"
    with backend(data) as b:  # the ended session stays ended
        error(b.client(**cookie).get("/api/runtimes"), 401, "unauthorized")


def test_sessions_expire_when_idle_and_at_their_absolute_limit(tmp_path: Path) -> None:
    """A session unused for --session-idle-s is refused, and so is one older than
    --session-max-s even while it is in use."""
    with backend(tmp_path / "a", "--session-idle-s", "1.5", "--session-max-s", "600") as b:
        sid = b.client().post("/api/session", json={"token": b.token}).cookies["yoi_session"]
        c = b.client(Cookie=f"yoi_session={sid}")
        for _ in range(4):  # in use: stays alive past the idle limit
            time.sleep(0.6)
            assert c.get("/api/runtimes").status_code == 200
        time.sleep(2.0)
        error(c.get("/api/runtimes"), 401, "unauthorized")
    with backend(tmp_path / "b", "--session-idle-s", "600", "--session-max-s", "2") as b:
        sid = b.client().post("/api/session", json={"token": b.token}).cookies["yoi_session"]
        c = b.client(Cookie=f"yoi_session={sid}")
        assert c.get("/api/runtimes").status_code == 200
        deadline = time.monotonic() + 10
        while c.get("/api/runtimes").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        error(c.get("/api/runtimes"), 401, "unauthorized")
