"""The event stream (contract §7, ``event-stream`` extra): Server-Sent Events over the Runtime's
own subscriptions, in a router of its own so that a Runtime can serve commands without it.
:class:`SseResponse` serves the same stream format (:mod:`worker_runtime.sse`, whose
:func:`encode_event` is re-exported here) for other servers (the Workspace Backend).

- ``GET /v1/events?cursor=`` is the runtime-wide stream; ``GET /v1/workers/{id}/events?cursor=``
  carries one Worker's events. ``Last-Event-ID``, when sent, is the cursor.
- Cursor and Worker errors are plain HTTP errors, raised by ``Runtime.subscribe`` before the
  stream starts. Above ``max_streams`` open streams a new one gets 503 ``runtime_unavailable``.
- The stream opens with a ``retry:`` hint, then one message per event (``id:`` cursor,
  ``event:`` kind, ``data:`` the event as one JSON line), with a comment heartbeat while idle.
  It ends after ``resync_required`` (the subscriber fell behind) or ``runtime_shutdown`` (the
  Runtime closed). A client leaving frees its subscription at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

try:
    from sse_starlette import EventSourceResponse, ServerSentEvent
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    from ..errors import MissingExtraError

    raise MissingExtraError("event-stream") from exc

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .. import Runtime, RuntimeUnavailable, Subscription
from ..errors import invalid_input_from
from ..sse import encode_event, retry_hint
from ._openapi import Operation, validate_query
from .settings import HttpSettings

__all__ = ["SSE_RESPONSE", "SseResponse", "encode_event", "last_event_id", "stream_operations"]

#: Cursors are short; anything longer is not one (and is not worth parsing).
_MAX_CURSOR_CHARS = 200
_CURSOR_SCHEMA = {"anyOf": [{"type": "string", "maxLength": _MAX_CURSOR_CHARS}, {"type": "null"}]}

#: The OpenAPI response of a route that streams Server-Sent Events.
SSE_RESPONSE: dict[str, Any] = {
    "description": "A Server-Sent Events stream (`text/event-stream`).",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


class EventsQuery(BaseModel):
    cursor: Annotated[str, Field(max_length=_MAX_CURSOR_CHARS)] | None = None


class _Streams:
    """Counts open streams against the cap; one per app."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0

    def acquire(self) -> None:
        if self.open >= self.cap:
            raise RuntimeUnavailable(
                "too many open event streams; retry later",
                details={"reason": "too_many_streams", "max_streams": self.cap},
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1


class SseResponse(EventSourceResponse):
    """A Server-Sent Events response as yoi streams them: a ``retry:`` hint first, then the
    ``messages`` (already encoded, see :func:`encode_event`), a ``: heartbeat`` comment every
    ``heartbeat_s`` while idle. ``on_close`` runs however the response ends (the stream
    finished, the client left, the server cancelled it)."""

    def __init__(
        self,
        messages: AsyncIterator[bytes],
        *,
        heartbeat_s: float,
        retry_ms: int = 2000,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            _with_retry_hint(messages, retry_ms),
            ping=heartbeat_s,
            ping_message_factory=_heartbeat,
            sep="\n",
            # The source ends the stream itself (runtime_shutdown) when it closes; give it
            # that long after the server starts shutting down before the stream is cut.
            shutdown_grace_period=30.0,
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                await self._on_close()


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat")


async def _with_retry_hint(messages: AsyncIterator[bytes], retry_ms: int) -> AsyncIterator[bytes]:
    yield retry_hint(retry_ms)
    async for message in messages:
        yield message


async def _messages(subscription: Subscription) -> AsyncIterator[bytes]:
    async for event in subscription:
        # One write for the run of events already read: far fewer sends under load.
        ready = subscription.ready()
        if not ready:
            yield encode_event(event)
        else:
            yield b"".join([encode_event(event), *map(encode_event, ready)])


def last_event_id(request: Request, max_chars: int) -> str | None:
    """The ``Last-Event-ID`` header as the client sent it (browsers send UTF-8; Starlette
    decodes headers as Latin-1), or ``None``; over ``max_chars`` it is ``invalid_input``."""
    value = request.headers.get("last-event-id")
    if value is None:
        return None
    if len(value) > max_chars:
        raise invalid_input_from(
            [{"type": "string_too_long", "loc": ("header", "Last-Event-ID"),
              "msg": f"String should have at most {max_chars} characters"}]
        )  # fmt: skip
    return value.encode("latin-1").decode("utf-8", "replace")


def _cursor(request: Request) -> str | None:
    """The cursor to resume after: ``Last-Event-ID`` when sent (a reconnecting EventSource
    resumes from what it saw last), else the ``cursor`` query parameter."""
    query = validate_query(EventsQuery, request.query_params)
    return last_event_id(request, _MAX_CURSOR_CHARS) or query.cursor


def stream_operations(runtime: Runtime, settings: HttpSettings) -> list[Operation]:
    """The two SSE routes of contract §7 over ``runtime``'s subscriptions."""
    streams = _Streams(settings.max_streams)

    def open_stream(request: Request, worker_id: str | None) -> SseResponse:
        cursor = _cursor(request)
        worker = runtime.ref(worker_id) if worker_id is not None else None
        streams.acquire()
        try:
            subscription = runtime.subscribe(cursor=cursor, worker=worker)
        except BaseException:
            streams.release()
            raise

        async def release() -> None:
            await subscription.aclose()
            streams.release()

        return SseResponse(
            _messages(subscription),
            heartbeat_s=settings.heartbeat_s,
            retry_ms=settings.retry_ms,
            on_close=release,
        )

    async def runtime_events(request: Request) -> Response:
        """Every Worker's events, in log order, after ``cursor`` (new events only without)."""
        return open_stream(request, None)

    async def worker_events(request: Request) -> Response:
        """One Worker's events after ``cursor`` (new events only without)."""
        return open_stream(request, request.path_params["worker_id"])

    last_event_id = (("Last-Event-ID", _CURSOR_SCHEMA),)
    return [
        Operation(
            "GET", "/v1/events", runtime_events, "events",
            query=EventsQuery, headers=last_event_id, stream=SSE_RESPONSE,
        ),
        Operation(
            "GET", "/v1/workers/{worker_id}/events", worker_events, "events",
            query=EventsQuery, headers=last_event_id, stream=SSE_RESPONSE,
        ),
    ]  # fmt: skip
