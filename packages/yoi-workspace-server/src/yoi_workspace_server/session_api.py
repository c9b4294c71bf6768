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

import json
import time
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from worker_runtime.http import validate_body

from .trust import SESSION_COOKIE, Auth, TrustBoundary, error_headers, session_ids

__all__ = ["SignIn", "install_session_routes"]


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: Annotated[str, Field(min_length=1, max_length=4096)]


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _answer(body: dict[str, Any], status_code: int = 200, cookie: str | None = None) -> Response:
    response = Response(
        json.dumps(body, separators=(",", ":")), status_code, media_type="application/json"
    )
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    return response


def install_session_routes(app: FastAPI, boundary: TrustBoundary) -> None:
    """Add the three ``/api/session`` routes to ``app``, served behind ``boundary``."""
    sessions = boundary.sessions

    def describe(auth: Auth) -> dict[str, Any]:
        expires = None
        if auth.session is not None:
            expires = _iso(auth.session.expires_at(sessions.idle_s, sessions.max_s))
        return {
            "authenticated": auth.method is not None,
            "method": auth.method,
            "expires_at": expires,
        }

    def cookie(value: str, max_age: int, request: Request) -> str:
        secure = boundary.settings.secure_cookies or request.url.scheme == "https"
        return f"{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}" + (
            "; Secure" if secure else ""
        )

    @app.post("/api/session", status_code=201)
    async def sign_in(request: Request) -> Response:
        body = validate_body(SignIn, await request.body())
        if not boundary.token_matches(body.token):
            refusal = boundary.note_failure(request.scope, "a failed sign-in")
            response = _answer(refusal.to_envelope(), refusal.status)
            for name, value in error_headers(refusal):
                response.headers.append(name.decode(), value.decode())
            return response
        for old in session_ids(request.scope):  # a new sign-in replaces the browser's session
            boundary.end_session(old)
        session_id, info = sessions.create()
        auth = Auth("cookie", session_id, info)
        return _answer(describe(auth), 201, cookie(session_id, int(sessions.max_s), request))

    @app.get("/api/session")
    async def who_am_i(request: Request) -> Response:
        auth: Auth = request.state.auth
        return _answer(describe(auth))

    @app.delete("/api/session")
    async def sign_out(request: Request) -> Response:
        for session_id in session_ids(request.scope):
            boundary.end_session(session_id)
        auth: Auth = request.state.auth
        after = Auth("bearer") if auth.method == "bearer" else Auth()
        return _answer(describe(after), cookie=cookie("", 0, request))
