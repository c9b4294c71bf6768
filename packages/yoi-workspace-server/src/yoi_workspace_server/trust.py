"""The browser trust boundary: one ASGI layer in front of the Backend's app (see
``docs/security.md`` for the threat model each rule answers).

In order, for every HTTP request:

1. ``/healthz`` is open (no Host check, no credentials).
2. **Host allow-list**: a ``Host`` that is not ``localhost``, ``127.0.0.1``, ``[::1]``, the
   bound host, the ``--public-url`` host or an ``--allowed-host`` name is ``403
   host_not_allowed`` (DNS rebinding), credentials or not.
3. **No cross-site requests**: a write (``POST``, ``PUT``, ``PATCH``, ``DELETE``, and any
   ``OPTIONS`` preflight) whose ``Origin`` is not the request's own origin (the scheme and
   ``Host`` it arrived with; the ``--public-url`` origin when it names that host), or any
   write or ``/api`` request carrying ``Sec-Fetch-Site: cross-site`` or ``same-site``, is
   ``403 origin_not_allowed`` (CSRF), credentials or not.
4. **Authentication**: every ``/api`` route and stream needs ``Authorization: Bearer <token>``
   (the scheme in any case) or a live ``yoi_session`` cookie, else ``401 unauthorized``
   (``429 too_many_requests`` after a burst of bad tokens from one client).
   ``/api/session`` itself is reachable without them (it is how a browser signs in), but
   not with a bad token.
5. **JSON only**: a body-carrying ``/api`` request whose ``Content-Type`` is not
   ``application/json`` (``charset=utf-8`` allowed) is ``415 unsupported_media_type``; so is a
   non-empty body with no ``Content-Type``.
6. The body cap (``413 payload_too_large``).

Every response, refusals included, gets ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and
``Cross-Origin-Resource-Policy: same-origin``; ``/api`` responses ``Cache-Control: no-store``;
HTML the :data:`HTML_CSP`. No ``Access-Control-*`` header ever leaves (no CORS).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio

from worker_runtime import Unauthorized, WorkerRuntimeError
from worker_runtime.http._guard import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    call_with_capped_body,
    content_length,
    send_error,
)

from .errors import HostNotAllowed, OriginNotAllowed, TooManyRequests, UnsupportedMediaType
from .sessions import FailedLogins, SessionInfo, Sessions

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "HTML_CSP",
    "SESSION_COOKIE",
    "Auth",
    "TrustBoundary",
    "TrustSettings",
    "error_headers",
    "is_protected",
    "normalize_host",
]

log = logging.getLogger("yoi_workspace_server.trust")

SESSION_COOKIE = "yoi_session"
DEFAULT_ALLOWED_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
HTML_CSP = "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODY_METHODS = _WRITES
_DEFAULT_PORTS = {"http": 80, "https": 443}
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


def normalize_host(name: str) -> str | None:
    """A host name or address as the allow-list compares it: lower case, no brackets, no
    trailing dot; ``None`` when it is not a plausible host."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    name = name.rstrip(".")
    if not name or any(c in name for c in "/@?#[]\\ \t%") or ":" in name:
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    return name


def _split_host_header(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header value (port ``None`` when absent)."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
    else:
        host, colon, port_text = value.partition(":")
        rest = colon + port_text
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
            return None
        port = int(rest[1:])
    normalized = normalize_host(host)
    return (normalized, port) if normalized else None


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin or URL, default ports filled in."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = normalize_host(f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname)
    if host is None:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def is_protected(path: str) -> bool:
    """Whether ``path`` needs credentials: all of ``/api`` (and the OpenAPI document)."""
    return path == "/api" or path.startswith("/api/") or path == "/openapi.json"


@dataclass(frozen=True)
class TrustSettings:
    """``token``: the browser token. ``bound_host``: the host the Backend listens on.
    ``allowed_hosts``: ``--allowed-host`` names. ``public_url``: the address browsers use
    when a TLS reverse proxy is in front (its host is allowed, its origin is the Backend's
    own, and ``https`` makes the session cookie ``Secure``)."""

    token: str
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    public_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    hosts: frozenset[str] = field(init=False)
    public_origin: tuple[str, str, int] | None = field(init=False)

    def __post_init__(self) -> None:
        hosts = set(DEFAULT_ALLOWED_HOSTS)
        for name in (self.bound_host, *self.allowed_hosts):
            normalized = normalize_host(f"[{name}]" if ":" in name.strip("[]") else name)
            if normalized is None:
                raise ValueError(f"not a host name: {name!r}")
            hosts.add(normalized)
        public = None
        if self.public_url is not None:
            public = _origin_of(self.public_url)
            if public is None:
                raise ValueError("the public URL must be an http(s) URL with a host")
            hosts.add(public[1])
        object.__setattr__(self, "hosts", frozenset(hosts))
        object.__setattr__(self, "public_origin", public)

    @property
    def secure_cookies(self) -> bool:
        return self.public_origin is not None and self.public_origin[0] == "https"

    def __repr__(self) -> str:
        return (
            f"TrustSettings(token='***', bound_host={self.bound_host!r}, "
            f"allowed_hosts={self.allowed_hosts!r}, public_url={self.public_url!r})"
        )


@dataclass(frozen=True)
class Auth:
    """How a request is signed in (in ``request.state.auth``): ``method`` ``"bearer"`` or
    ``"cookie"`` (with its ``session``), or ``None`` when it is not."""

    method: str | None = None
    session_id: str | None = None
    session: SessionInfo | None = None


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


class TrustBoundary:
    """The ASGI layer described in the module docstring, in front of ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        settings: TrustSettings,
        sessions: Sessions,
        failures: FailedLogins,
    ) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions
        self.failures = failures
        self._token = settings.token.encode("utf-8")
        self._streaming: dict[str, set[anyio.Event]] = {}  # session id -> its open GETs

    # -- credentials --------------------------------------------------------------------

    def token_matches(self, presented: str) -> bool:
        """Compare a presented token with the browser token in constant time."""
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self._token)

    def authenticate(self, scope: Scope) -> tuple[Auth, str | None]:
        """The request's sign-in, and what failed (``"bad_token"``, ``"unknown_session"``)
        when it presented credentials that are not valid."""
        failure = None
        bearer = bearer_of(scope)
        if bearer is not None:
            if bearer and self.token_matches(bearer):
                return Auth("bearer"), None
            failure = "bad_token"
        for session_id in session_ids(scope):
            info = self.sessions.check(session_id)
            if info is not None:
                return Auth("cookie", session_id, info), None
            failure = failure or "unknown_session"
        return Auth(), failure

    def note_failure(self, scope: Scope, what: str) -> WorkerRuntimeError:
        """Log a failed sign-in or bad token (never its value), count it, and the error to
        answer with."""
        client = client_of(scope)
        self.failures.record(client)
        log.warning("refused %s from client %s on %s", what, client, scope["path"][:200])
        wait = self.failures.retry_after(client)
        if wait is not None:
            return TooManyRequests(
                "too many failed sign-ins from this client; try again later",
                details={"retry_after_s": int(wait) + 1},
            )
        return Unauthorized("a valid bearer token or session is required")

    # -- the layer ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket routes: refuse the handshake
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        path: str = scope["path"]
        send = self._with_headers(send, path)
        if path == "/healthz":
            await self.app(scope, receive, send)
            return
        try:
            self._check_host(scope)
            self._check_origin(scope)
            if is_protected(path):
                auth, failure = self.authenticate(scope)
                scope.setdefault("state", {})["auth"] = auth
                if failure == "bad_token" and auth.method is None:  # on every route
                    raise self.note_failure(scope, "a bad token")
                if auth.method is None and path != "/api/session":
                    if failure == "unknown_session":
                        log.info("refused an unknown or expired session cookie")
                    raise Unauthorized("a valid bearer token or session is required")
                self._check_content_type(scope)
        except WorkerRuntimeError as exc:
            await _send_error(send, exc)
            return
        auth = scope.get("state", {}).get("auth")
        if isinstance(auth, Auth) and auth.session_id and scope["method"] == "GET":
            await self._while_session_lives(auth.session_id, scope, receive, send)
            return
        await self._capped(scope, receive, send)

    def end_session(self, session_id: str) -> bool:
        """End a session at once, and every response still streaming under it (the app sees
        its client leave). Whether the session existed."""
        for ended in self._streaming.pop(session_id, set()):
            ended.set()
        return self.sessions.end(session_id)

    async def _while_session_lives(
        self, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve a GET signed in by cookie (an event stream may last for hours) so that
        ending its session ends it too: the app's ``receive`` then reports a disconnect, and
        a response it leaves open is finished here."""
        ended = anyio.Event()
        self._streaming.setdefault(session_id, set()).add(ended)
        started = done = False

        async def tracked_send(message: Message) -> None:
            nonlocal started, done
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                done = True
            await send(message)

        async def until_ended() -> Message:
            message: Message = {"type": "http.disconnect"}
            if ended.is_set():
                return message
            async with anyio.create_task_group() as tg:

                async def next_message() -> None:
                    nonlocal message
                    message = await receive()
                    tg.cancel_scope.cancel()

                async def session_end() -> None:
                    await ended.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(next_message)
                tg.start_soon(session_end)
            return message

        try:
            await self._capped(scope, until_ended, tracked_send)
        finally:
            waiting = self._streaming.get(session_id)
            if waiting is not None:
                waiting.discard(ended)
                if not waiting:
                    del self._streaming[session_id]
        if ended.is_set() and started and not done:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _check_host(self, scope: Scope) -> None:
        values = header(scope, b"host")
        parsed = _split_host_header(values[0]) if len(values) == 1 else None
        if parsed is None or parsed[0] not in self.settings.hosts:
            raise HostNotAllowed("this host name is not allowed")

    def _own_origin(self, scope: Scope) -> tuple[str, str, int]:
        """The origin the request was sent to: the public one for a request that names the
        public host (it came through the proxy), else the scheme and Host it arrived with."""
        host, port = _split_host_header(header(scope, b"host")[0]) or ("", None)
        public = self.settings.public_origin
        if public is not None and host == public[1]:
            return public
        scheme = str(scope.get("scheme", "http"))
        return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme, 80)

    def _check_origin(self, scope: Scope) -> None:
        method = scope["method"]
        write = method in _WRITES or method == "OPTIONS"
        sites = [v.strip().lower() for v in header(scope, b"sec-fetch-site")]
        if (write or is_protected(scope["path"])) and any(
            s in ("cross-site", "same-site") for s in sites
        ):
            raise OriginNotAllowed("cross-site requests are not allowed")
        if not write:
            return
        origins = header(scope, b"origin")
        if not origins:
            return
        parsed = _origin_of(origins[0]) if len(origins) == 1 else None
        if parsed is None or parsed != self._own_origin(scope):
            raise OriginNotAllowed("requests from another origin are not allowed")

    def _check_content_type(self, scope: Scope) -> None:
        if scope["method"] not in _BODY_METHODS:
            return
        values = header(scope, b"content-type")
        if not values:
            if content_length(scope) not in (None, 0) or _chunked(scope):
                raise UnsupportedMediaType("a request body must be application/json")
            return
        media, *params = (p.strip().lower() for p in values[0].split(";"))
        charset_ok = all(
            not p.startswith("charset=") or p[8:].strip('"') in ("utf-8", "utf8") for p in params
        )
        if len(values) > 1 or media != "application/json" or not charset_ok:
            raise UnsupportedMediaType(
                "a request body must be application/json", details={"accepted": "application/json"}
            )

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body up to the cap, then hand it on (``413 payload_too_large`` above)."""
        await call_with_capped_body(self.app, scope, receive, send, self.settings.max_body_bytes)

    def _with_headers(self, send: Send, path: str) -> Send:
        api = is_protected(path)

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _secured(message, api)
            await send(message)

        return wrapped


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


async def _send_error(send: Send, error: WorkerRuntimeError) -> None:
    await send_error(send, error, error_headers(error))


def _chunked(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope["headers"]
    )
