"""``/api/session``: a browser signs in with the token and gets a session cookie.

- ``POST /api/session {"token"}`` checks the token in constant time and answers 201 with
  ``Set-Cookie: yoi_session=<random id>; HttpOnly; SameSite=Strict; Path=/`` (``Secure``
  behind https). The cookie holds a random id, never the token; a session the request
  already carried ends (a sign-in never keeps an id chosen before it).
- ``GET /api/session`` says whether the caller is signed in, and how.
- ``DELETE /api/session`` ends the caller's session at once (and every stream still open
  under it) and clears the cookie.

Each answers ``{"authenticated", "method", "expires_at"}`` (``method``: ``"cookie"``,
``"bearer"`` or ``null``; ``expires_at``: when the session ends unless it is used again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from worker_runtime.http import Operation, json_response, read_body, validate_body

from .trust import SESSION_COOKIE, Auth, TrustBoundary, error_headers, session_ids

__all__ = ["SessionState", "SignIn", "session_operations"]


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: Annotated[str, Field(min_length=1, max_length=4096)]


class SessionState(BaseModel):
    """Whether the caller is signed in, how, and when its session ends unless used again."""

    authenticated: bool
    method: Literal["cookie", "bearer"] | None
    expires_at: str | None


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def session_operations(trust: Callable[[], TrustBoundary]) -> list[Operation]:
    """The three ``/api/session`` operations, served behind the boundary ``trust()`` returns
    (the boundary wraps the app they are part of, so it is looked up per request)."""

    def answer(
        request: Request, auth: Auth, status: int = 200, cookie: tuple[str, int] | None = None
    ) -> Response:
        boundary = trust()
        expires = None
        if auth.session is not None:
            sessions = boundary.sessions
            expires = _iso(auth.session.expires_at(sessions.idle_s, sessions.max_s))
        body = SessionState(
            authenticated=auth.method is not None, method=auth.method, expires_at=expires
        )
        response = json_response(body, status)
        if cookie is not None:
            value, max_age = cookie
            secure = boundary.settings.secure_cookies or request.url.scheme == "https"
            response.headers.append(
                "set-cookie",
                f"{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
                + ("; Secure" if secure else ""),
            )
        return response

    async def sign_in(request: Request) -> Response:
        """Check the token (in constant time) and start a session: 201 with its cookie."""
        boundary = trust()
        body = validate_body(SignIn, await read_body(request))
        if not boundary.token_matches(body.token):
            refusal = boundary.note_failure(request.scope, "a failed sign-in")
            response = JSONResponse(refusal.to_envelope(), refusal.status)
            for name, value in error_headers(refusal):
                response.headers.append(name.decode(), value.decode())
            return response
        for old in session_ids(request.scope):  # a new sign-in replaces the browser's session
            boundary.end_session(old)
        sessions = boundary.sessions
        session_id, info = sessions.create()
        return answer(
            request, Auth("cookie", session_id, info), 201, (session_id, int(sessions.max_s))
        )

    async def who_am_i(request: Request) -> Response:
        """Whether the caller is signed in, and how."""
        auth: Auth = request.state.auth
        return answer(request, auth)

    async def sign_out(request: Request) -> Response:
        """End the caller's session at once (and every stream still open under it)."""
        for session_id in session_ids(request.scope):
            trust().end_session(session_id)
        auth: Auth = request.state.auth
        after = Auth("bearer") if auth.method == "bearer" else Auth()
        return answer(request, after, cookie=("", 0))

    return [
        Operation("POST", "/api/session", sign_in, "session", SessionState, 201, body=SignIn),
        Operation("GET", "/api/session", who_am_i, "session", SessionState),
        Operation("DELETE", "/api/session", sign_out, "session", SessionState),
    ]
