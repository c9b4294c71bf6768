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
import logging
from dataclasses import dataclass
from typing import Literal

import anyio

from worker_runtime import Unauthorized, WorkerRuntimeError
from worker_runtime.http import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    call_with_capped_body,
    content_length,
    send_error,
)

from ._trustheaders import (
    HTML_CSP,
    SESSION_COOKIE,
    _secured,
    bearer_of,
    client_of,
    error_headers,
    header,
)
from ._trustheaders import (
    session_ids as session_ids,  # re-exported: session_api
)
from ._trusthosts import (
    _DEFAULT_PORTS,
    DEFAULT_ALLOWED_HOSTS,
    TrustSettings,
    _origin_of,
    _split_host_header,
    normalize_host,
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

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODY_METHODS = _WRITES


def is_protected(path: str) -> bool:
    """Whether ``path`` needs credentials: all of ``/api`` (and the OpenAPI document)."""
    return path == "/api" or path.startswith("/api/") or path == "/openapi.json"


@dataclass(frozen=True)
class Auth:
    """How a request is signed in (in ``request.state.auth``): ``method`` ``"bearer"`` or
    ``"cookie"`` (with its ``session``), or ``None`` when it is not."""

    method: Literal["bearer", "cookie"] | None = None
    session_id: str | None = None
    session: SessionInfo | None = None


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


async def _send_error(send: Send, error: WorkerRuntimeError) -> None:
    await send_error(send, error, error_headers(error))


def _chunked(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope["headers"]
    )
