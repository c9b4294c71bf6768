"""The web console: static files of this package (``console/``), served by the Backend itself.

- The app shell (``index.html``) answers every console route, so a deep link survives a
  reload: ``/`` (Workers), ``/runtimes``, ``/new`` and
  ``/runtimes/{runtime_id}/workers/{worker_id}`` (the Worker console).
- The assets are under ``/console/`` (ES modules, CSS, an SVG icon). Only files that ship in
  the package are served, by exact name: no directory listing, no path is ever joined from
  the request.
- The trust boundary in front adds the headers: the HTML Content-Security-Policy
  (``default-src 'self'``: nothing from another origin, no inline script), ``nosniff``,
  ``no-referrer``, ``DENY`` framing. The files hold no secret: they are served without a
  session (the Host allow-list still applies); every ``/api`` route needs one.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from worker_runtime.http import ASGIApp, Receive, Scope, Send

__all__ = ["ConsoleFiles"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_SHELL_ROUTES = re.compile(r"^/(?:runtimes|new|runtimes/[^/]{1,400}/workers/[^/]{1,400})?/?$")


def _load() -> dict[str, tuple[bytes, str]]:
    """Every shipped asset by its URL path, read once."""
    root = files("yoi_workspace_server") / "console"
    assets: dict[str, tuple[bytes, str]] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if suffix in _TYPES:
                assets[f"/console/{prefix}{child.name}"] = (child.read_bytes(), _TYPES[suffix])

    walk(root, "")
    return assets


class ConsoleFiles:
    """In front of the API: console routes and assets (GET/HEAD) are answered here, everything
    else goes to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.assets = _load()
        self.shell = self.assets["/console/index.html"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            found = self.assets.get(path)
            if found is None and _SHELL_ROUTES.match(path):
                found = self.shell
            if found is not None:
                await self._send(send, scope["method"] == "HEAD", *found)
                return
        await self.app(scope, receive, send)

    async def _send(self, send: Send, head: bool, body: bytes, content_type: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})
