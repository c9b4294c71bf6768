"""The Backend's event stream over all sources (``GET /api/events``), for browsers: one
connection per tab, whatever the tab shows.

Its cursor is **composite**: the last runtime cursor delivered for each source, in one opaque
Backend cursor (``b2.`` + base64url JSON ``{runtime_id: runtime cursor}``). Resuming from it
resumes each source exactly from its own cursor, so a reload, a network drop or a Backend
restart loses and repeats nothing. A source that is not in the cursor yet starts with its new
events only. A per-runtime Backend cursor (``b1.``, as a transcript page or an ack carries) is
accepted too: it is the composite cursor of that one source, which is how a view opens from
a transcript page and its cursor.

Each message is the event with ``cursor`` (and the SSE ``id:``) set to the composite cursor
after it and ``source_cursor`` set to the event's own per-runtime Backend cursor. Stream
notices (``diagnostic`` with no cursor: ``runtime_unavailable``, ``resync_required``,
``runtime_shutdown`` …) carry neither and always pass the ``kinds`` filter.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from worker_runtime import CursorMalformed, CursorUnknown, Event, WorkerRuntimeError
from worker_runtime.events import notice
from worker_runtime.models import is_valid_id

from .cursors import wrap_cursor, wrap_error_cursors
from .registry import RuntimeRegistry
from .sources import SourceEvents

__all__ = ["MAX_CURSOR_CHARS", "CompositeCursor", "merged_messages", "open_sources", "utf8"]

log = logging.getLogger("yoi_workspace_server.stream")

_PREFIX = "b2."
_SINGLE_PREFIX = "b1."
#: A composite cursor holds one runtime cursor per source; this bounds what is parsed.
MAX_CURSOR_CHARS = 8000
#: Events buffered between the sources' pumps and the browser's connection.
_BUFFER = 512


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(body: str) -> bytes:
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


@dataclass
class CompositeCursor:
    """The last runtime cursor delivered for each source."""

    positions: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        body = json.dumps(self.positions, separators=(",", ":"), sort_keys=True)
        return _PREFIX + _b64(body.encode())

    @classmethod
    def decode(cls, cursor: str) -> CompositeCursor:
        """A composite (``b2.``) or per-runtime (``b1.``) Backend cursor, or
        ``cursor_malformed``."""
        malformed = CursorMalformed("not a cursor", details={"cursor": cursor[:200]})
        if len(cursor) > MAX_CURSOR_CHARS:
            raise malformed
        try:
            if cursor.startswith(_SINGLE_PREFIX):
                owner, sep, inner = _unb64(cursor[len(_SINGLE_PREFIX) :]).decode().partition("\n")
                if not sep or not inner or not is_valid_id(owner):
                    raise malformed
                return cls({owner: inner})
            if cursor.startswith(_PREFIX):
                value = json.loads(_unb64(cursor[len(_PREFIX) :]).decode())
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and is_valid_id(k) and isinstance(v, str) and v
                    for k, v in value.items()
                ):
                    raise malformed
                return cls(dict(value))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise malformed from None
        raise malformed


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, a lone surrogate (which a remote's JSON may carry) as U+FFFD."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def _encode(event: Event, composite: CompositeCursor | None) -> bytes:
    fields = event.to_dict()
    if event.cursor is None or composite is None:
        data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        return utf8(f"event: {event.kind}\ndata: {data}\n\n")
    composite.positions[event.runtime_id] = event.cursor
    cursor = composite.encode()
    fields["cursor"] = cursor
    fields["source_cursor"] = wrap_cursor(event.runtime_id, event.cursor)
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return utf8(f"id: {cursor}\nevent: {event.kind}\ndata: {data}\n\n")


Opened = tuple[str, SourceEvents]


async def open_sources(
    registry: RuntimeRegistry,
    runtime_id: str | None,
    worker_id: str | None,
    start: CompositeCursor,
) -> list[Opened]:
    """Open the stream of each selected source that can stream, from its cursor in ``start``.
    Errors a source can decide before the stream starts (a cursor it cannot resume, an
    unknown Worker or runtime) raise here, as plain HTTP errors. A cursor naming a runtime
    that is no longer registered is ignored; with ``runtime_id`` it must name that runtime."""
    if runtime_id is not None:
        sources = [registry.get(runtime_id)]
        foreign = set(start.positions) - {runtime_id}
        if foreign:
            raise CursorUnknown(
                "the cursor belongs to another runtime",
                details={"runtime_id": sorted(foreign)[0][:200]},
            )
    else:
        sources = [s for s in registry.sources() if s.capabilities.can_stream_events]
    opened: list[Opened] = []
    try:
        for source in sources:
            try:
                events = await source.open_events(worker_id, start.positions.get(source.runtime_id))
            except BaseException as exc:
                wrap_error_cursors(source.runtime_id, exc)
                raise
            opened.append((source.runtime_id, events))
    except BaseException:
        for _, events in opened:
            await events.aclose()
        raise
    return opened


async def _guarded(
    runtime_id: str, worker_id: str | None, events: AsyncIterable[Event]
) -> AsyncGenerator[Event, None]:
    """A source's events; an error it raises once streaming (a remote's ``cursor_expired``,
    a refused token …) becomes a final notice carrying that error's code."""
    try:
        async for event in events:
            yield event
    except WorkerRuntimeError as exc:
        log.info("stream of runtime %s ended: %s", runtime_id, exc.code)
        yield notice(runtime_id, worker_id, exc.code, exc.message)


def _wanted(event: Event, kinds: frozenset[str] | None) -> bool:
    return kinds is None or event.cursor is None or event.kind in kinds


async def merged_messages(
    registry: RuntimeRegistry,
    opened: Sequence[Opened],
    worker_id: str | None,
    kinds: frozenset[str] | None,
    start: CompositeCursor,
) -> AsyncGenerator[bytes, None]:
    """The encoded messages of every opened source, each source in its own order. One source
    is read directly; several are read by one pump each (in the registry's task group, ended
    when this generator closes) into a bounded buffer: a slow browser holds the pumps back,
    and each source's subscription catches up from its log or ends with ``resync_required``.
    The stream ends when every source's stream has ended."""
    composite = CompositeCursor(dict(start.positions))
    if len(opened) == 1:
        runtime_id, events = opened[0]
        async with aclosing(events):
            async for event in _guarded(runtime_id, worker_id, events):
                if _wanted(event, kinds):
                    yield _encode(event, composite)
        return
    send: MemoryObjectSendStream[Event | None]
    receive: MemoryObjectReceiveStream[Event | None]
    send, receive = anyio.create_memory_object_stream(_BUFFER)
    scopes = []

    def pump(runtime_id: str, events: SourceEvents) -> anyio.CancelScope:
        async def run() -> None:
            try:
                async with aclosing(events):
                    async for event in _guarded(runtime_id, worker_id, events):
                        if _wanted(event, kinds):
                            await send.send(event)
            except anyio.BrokenResourceError:
                return
            finally:
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await send.send(None)  # this source has ended

        return registry.spawn(run)

    for runtime_id, events in opened:
        scopes.append(pump(runtime_id, events))
    live = len(opened)
    try:
        async with receive:
            while live:
                first = await receive.receive()
                batch: list[Event | None] = [first]
                while len(batch) < 256:  # one write for what is already buffered
                    try:
                        batch.append(receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                chunks = []
                for item in batch:
                    if item is None:
                        live -= 1
                    else:
                        chunks.append(_encode(item, composite))
                if chunks:
                    yield b"".join(chunks)
    finally:
        for scope in scopes:
            scope.cancel()
