"""The ASGI guard in front of the REST app: authentication first (before anything reads the
body), then the request body cap. Both answer with the one error envelope."""

from __future__ import annotations

import hmac
import json

from ..errors import PayloadTooLarge, Unauthorized, WorkerRuntimeError
from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "OPEN_PATHS",
    "ASGIApp",
    "Guard",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "call_with_capped_body",
    "content_length",
    "send_error",
]

#: Routes that need no token.
OPEN_PATHS = frozenset({"/healthz"})


async def send_error(
    send: Send, error: WorkerRuntimeError, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(error.to_envelope()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def call_with_capped_body(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int
) -> None:
    """Read the whole request body, then call ``app`` with it; a body over ``limit`` bytes
    (declared or sent) is ``413 payload_too_large`` and ``app`` is not called."""
    declared = content_length(scope)
    if declared is not None and declared > limit:
        await send_error(send, _too_large(limit))
        return
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            await send_error(send, _too_large(limit))
            return
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)  # a body sent in one message is not copied
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is over {limit} bytes", details={"max_body_bytes": limit}
    )


class Guard:
    """Checks ``Authorization: Bearer <token>`` in constant time (unless ``token`` is
    ``None``: no authentication), then caps the body."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self._expected = token.encode() if token is not None else None
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            await send_error(
                send,
                Unauthorized("a valid bearer token is required"),
                ((b"www-authenticate", b"Bearer"),),
            )
            return
        await call_with_capped_body(self.app, scope, receive, send, self._max_body)

    def _authorized(self, scope: Scope) -> bool:
        if self._expected is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                # RFC 7235: the scheme is case-insensitive ("bearer", "BEARER" …).
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                return hmac.compare_digest(credentials.strip(b" "), self._expected)
        return False


def content_length(scope: Scope) -> int | None:
    """The request's declared ``Content-Length`` (``None``: none, or not a number)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
