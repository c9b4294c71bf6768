"""The parts of the Backend's stream routes: the ``kinds`` filter, the count of open streams
against the caps, and one source's events encoded with Backend cursors."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace

from worker_runtime import Event, InvalidInput, RuntimeUnavailable, WorkerRuntimeError
from worker_runtime.events import notice
from worker_runtime.http.stream import encode_event

from ._stream import utf8
from .cursors import wrap_cursor
from .sources import Source, SourceEvents

log = logging.getLogger("yoi_workspace_server.app")  # the routes' logger, as before the split


_KIND = re.compile(r"^[a-z_]{1,40}$")


def _parse_kinds(kinds: str | None) -> frozenset[str] | None:
    """``kinds=a,b``: the event kinds wanted (stream notices always pass)."""
    if kinds is None:
        return None
    names = frozenset(k.strip() for k in kinds.split(",") if k.strip())
    if not names or len(names) > 32 or not all(_KIND.match(k) for k in names):
        raise InvalidInput(
            "kinds must be a comma-separated list of event kinds", details={"field": "kinds"}
        )
    return names


def _replace_surrogates(event: Event) -> Event:
    """``event`` with every lone surrogate in its text replaced by U+FFFD."""
    clean = json.loads(utf8(json.dumps(event.to_dict(), ensure_ascii=False)))
    return replace(
        event,
        kind=clean["kind"],
        worker_id=clean["worker_id"],
        turn_id=clean["turn_id"],
        at=clean["at"],
        data=clean["data"],
    )


class _StreamSlots:
    """Open browser streams, counted against the Backend's cap and each remote's."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0

    def acquire(self, *sources: Source) -> None:
        """One browser stream, fed by ``sources``; those with a ``stream_cap`` count it."""
        if self.open >= self.cap:
            raise _too_many_streams(self.cap)
        capped = [s for s in sources if s.stream_cap is not None]
        for s in capped:
            if s.stream_cap is not None and s.open_streams >= s.stream_cap:
                raise _too_many_streams(s.stream_cap, per_runtime=True)
        for s in capped:
            s.open_streams += 1
        self.open += 1

    def release(self, *sources: Source) -> None:
        self.open -= 1
        for s in sources:
            if s.stream_cap is not None:
                s.open_streams -= 1


def _too_many_streams(cap: int, per_runtime: bool = False) -> RuntimeUnavailable:
    where = "to this runtime" if per_runtime else "on this Backend"
    return RuntimeUnavailable(
        f"too many open event streams {where}; retry later",
        details={"reason": "too_many_streams", "max_streams": cap},
    )


async def _messages(runtime_id: str, worker_id: str, events: SourceEvents) -> AsyncIterator[bytes]:
    """The source's events, encoded with Backend cursors."""
    try:
        async for event in events:
            cursor = None if event.cursor is None else wrap_cursor(runtime_id, event.cursor)
            try:
                yield encode_event(event, cursor)
            except UnicodeEncodeError:  # a lone surrogate from a remote: U+FFFD instead
                yield encode_event(_replace_surrogates(event), cursor)
    except WorkerRuntimeError as exc:
        # A remote refused the stream once it started (e.g. cursor_expired): say so, then end.
        log.info("stream of runtime %s ended: %s", runtime_id, exc.code)
        yield encode_event(notice(runtime_id, worker_id, exc.code, exc.message))
