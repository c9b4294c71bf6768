"""The headers of the trust boundary: what it reads from a request (credentials, session
cookies, the client) and the security headers it puts on every response."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from worker_runtime import Unauthorized, WorkerRuntimeError
from worker_runtime.http import Message, Scope

from .errors import TooManyRequests

SESSION_COOKIE = "yoi_session"
HTML_CSP = "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
_COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_SET_BY_US = frozenset(
    {
        b"x-content-type-options",
        b"referrer-policy",
        b"x-frame-options",
        b"cross-origin-resource-policy",
    }
)


def header(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


def session_ids(scope: Scope) -> list[str]:
    """Every ``yoi_session`` value of the request's cookies."""
    found = []
    for value in header(scope, b"cookie"):
        for pair in value.split(";"):
            name, sep, v = pair.strip().partition("=")
            if sep and name == SESSION_COOKIE and v:
                found.append(v.strip('"'))
    return found


def bearer_of(scope: Scope) -> str | None:
    """The credentials of an ``Authorization: Bearer …`` header (the scheme matched in any
    case, RFC 7235); ``""`` for any other or repeated Authorization header; ``None`` with none."""
    values = header(scope, b"authorization")
    if not values:
        return None
    if len(values) > 1:
        return ""
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return credentials.strip()


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _secured(message: Message, api: bool) -> MutableMapping[str, Any]:
    headers: list[tuple[bytes, bytes]] = []
    html = False
    for name, value in message.get("headers", ()):
        lower = name.lower()
        if lower in _SET_BY_US or lower.startswith(b"access-control-"):
            continue
        if lower == b"content-security-policy" or (api and lower == b"cache-control"):
            continue
        if lower == b"content-type" and value.lower().startswith(b"text/html"):
            html = True
        headers.append((name, value))
    headers.extend(_COMMON_HEADERS)
    if api:
        headers.append((b"cache-control", b"no-store"))
    if html:
        headers.append((b"content-security-policy", HTML_CSP.encode()))
    return {**message, "headers": headers}


def error_headers(error: WorkerRuntimeError) -> tuple[tuple[bytes, bytes], ...]:
    """The headers a refusal carries besides the envelope (``WWW-Authenticate`` on a 401,
    ``Retry-After`` on a 429)."""
    if isinstance(error, Unauthorized):
        return ((b"www-authenticate", b"Bearer"),)
    if isinstance(error, TooManyRequests):
        return ((b"retry-after", str(error.details.get("retry_after_s", 60)).encode()),)
    return ()
