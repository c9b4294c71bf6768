"""The event stream (SPEC §7, ``event-stream`` extra): Server-Sent Events over the Runtime's
own subscriptions, in a router of its own so that a Runtime can serve commands without it.
:class:`SseResponse` and :func:`encode_event` are the same stream format for other servers
(the Workspace Backend).

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

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

try:
    from sse_starlette import EventSourceResponse, ServerSentEvent
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    from ..errors import MissingExtraError

    raise MissingExtraError("event-stream") from exc

from fastapi import APIRouter, Header, Query
from starlette.types import Receive, Scope, Send

from .. import Event, Runtime, RuntimeUnavailable, Subscription
from ._app import HttpSettings

__all__ = ["SseResponse", "encode_event", "stream_router"]

#: Cursors are short; anything longer is not one (and is not worth parsing).
_MAX_CURSOR_CHARS = 200
CursorQuery = Annotated[str | None, Query(max_length=_MAX_CURSOR_CHARS)]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=_MAX_CURSOR_CHARS)]


def encode_event(event: Event, cursor: str | None = None) -> bytes:
    """One SSE message: ``id`` (log events only), ``event`` and a one-line JSON ``data``.
    ``cursor`` replaces the event's own cursor (a proxy's cursor for a log event)."""
    fields = event.to_dict()
    if cursor is not None and event.cursor is not None:
        fields["cursor"] = cursor
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    if event.cursor is None:
        return f"event: {event.kind}\ndata: {data}\n\n".encode()
    return f"id: {fields['cursor']}\nevent: {event.kind}\ndata: {data}\n\n".encode()


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
    yield f"retry: {retry_ms}\n\n".encode()
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


def stream_router(runtime: Runtime, settings: HttpSettings) -> APIRouter:
    """The two SSE routes of SPEC §7 over ``runtime``'s subscriptions."""
    router = APIRouter(tags=["events"])
    streams = _Streams(settings.max_streams)
    sse: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "A Server-Sent Events stream (`text/event-stream`).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }

    def open_stream(
        cursor: str | None, last_event_id: str | None, worker_id: str | None
    ) -> SseResponse:
        if last_event_id:  # a reconnecting EventSource resumes from what it saw last
            cursor = last_event_id
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

    @router.get("/v1/events", response_class=EventSourceResponse, responses=sse)
    async def runtime_events(
        cursor: CursorQuery = None, last_event_id: LastEventId = None
    ) -> EventSourceResponse:
        """Every Worker's events, in log order, after ``cursor`` (new events only without)."""
        return open_stream(cursor, last_event_id, None)

    @router.get("/v1/workers/{worker_id}/events", response_class=EventSourceResponse, responses=sse)
    async def worker_events(
        worker_id: str, cursor: CursorQuery = None, last_event_id: LastEventId = None
    ) -> EventSourceResponse:
        """One Worker's events after ``cursor`` (new events only without)."""
        return open_stream(cursor, last_event_id, worker_id)

    return router
