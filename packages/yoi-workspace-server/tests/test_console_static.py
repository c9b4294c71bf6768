"""The console's static files as the Backend serves them: the app shell on every console
route, the assets under /console/, the headers, and a scan of every served asset for anything
that would reach another origin or run unsafe code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from ._browser import Backend, backend_process

SHELL_ROUTES = ["/", "/runtimes", "/new", "/runtimes/backend-internal/workers/wkr_x", "/new/"]
CSP = "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"

#: The one absolute URL an asset may hold: the SVG namespace (an identifier, never fetched).
_ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
_URL = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s'"`)<>]+""", re.IGNORECASE)
_UNSAFE = re.compile(
    r"innerHTML|outerHTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"randomUUID|@import|javascript:",
)


def _shipped() -> dict[str, bytes]:
    root = files("yoi_workspace_server") / "console"
    found: dict[str, bytes] = {}

    def walk(node: object, prefix: str) -> None:
        for child in node.iterdir():  # type: ignore[attr-defined]
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                found[f"/console/{prefix}{child.name}"] = child.read_bytes()

    walk(root, "")
    return found


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with backend_process(tmp_path_factory.mktemp("static")) as backend:
        yield backend


@pytest.fixture
def anonymous(backend: Backend) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend.url, timeout=10) as client:
        yield client


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.sources: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers.extend(name for name, _ in attrs if name.startswith("on"))
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.sources.append(str(values["src"]))
        for name in ("src", "href"):
            if values.get(name):
                self.sources.append(str(values[name]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


@pytest.mark.parametrize("path", SHELL_ROUTES)
def test_every_console_route_serves_the_app_shell(anonymous: httpx.Client, path: str) -> None:
    """Each console route (deep links included) answers the app shell, without a session,
    with the console's CSP and no inline script or handler."""
    response = anonymous.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    parser = _Scripts()
    parser.feed(response.text)
    assert parser.inline == []
    assert parser.handlers == []
    assert all(s.startswith("/console/") for s in parser.sources), parser.sources


def test_api_routes_stay_json_and_need_credentials(anonymous: httpx.Client) -> None:
    """/api is never answered by the shell: unknown API routes are JSON 404/401 envelopes, and
    a path that only looks like an asset is a 404."""
    for path in ("/api/workers", "/api/nope", "/api/runtimes/x/workers/y"):
        response = anonymous.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    for path in (
        "/console/nope.js",
        "/console/../app.py",
        "/console/%2e%2e/app.py",
        "/runtimes/a/b",
        "/workers",
        "/console/",
    ):
        response = anonymous.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")


def test_the_shell_obeys_the_host_allow_list(backend: Backend) -> None:
    """A console page asked for under a foreign Host (DNS rebinding) is refused."""
    response = httpx.get(f"{backend.url}/", headers={"Host": "attacker.example"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "host_not_allowed"


def test_served_assets_are_the_shipped_files(anonymous: httpx.Client) -> None:
    """Every file of the installed package's console/ is served under /console/, byte for byte,
    with its content type; HEAD answers without a body."""
    shipped = _shipped()
    assert {"/console/index.html", "/console/app.js", "/console/style.css"} <= set(shipped)
    types = {
        ".js": "text/javascript",
        ".css": "text/css",
        ".html": "text/html",
        ".svg": "image/svg",
    }
    for path, body in shipped.items():
        response = anonymous.get(path)
        assert response.status_code == 200, path
        assert response.content == body
        assert response.headers["content-type"].startswith(types[Path(path).suffix])
    head = anonymous.head("/console/app.js")
    assert head.status_code == 200
    assert head.content == b""


def test_no_asset_references_another_origin_or_unsafe_code(anonymous: httpx.Client) -> None:
    """No served asset names a URL of another origin (scripts, styles, fonts, icons), nor uses
    innerHTML-style sinks, eval, @import or crypto.randomUUID (a secure-context-only API)."""
    shipped = _shipped()
    assert len(shipped) >= 8
    for path in shipped:
        text = anonymous.get(path).text
        urls = set(_URL.findall(text)) - _ALLOWED_URLS
        assert not urls, (path, urls)
        assert not _UNSAFE.search(text), (path, _UNSAFE.search(text))
        if path.endswith(".css"):
            assert "url(" not in text, path
        if path.endswith(".js"):
            for module in re.findall(r"""from\s+['"]([^'"]+)['"]""", text):
                assert module.startswith(("./", "../")), (path, module)
