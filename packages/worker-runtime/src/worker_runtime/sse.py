"""The Server-Sent Events wire format of yoi's event streams (contract §7), framework-free.

The Runtime's stream and the Workspace Backend's stream both write these bytes; only the
``event-stream`` extra serves them. A stream is:

- a ``retry:`` hint first (:func:`retry_hint`);
- one message per event (:func:`encode_event`): ``id:`` the cursor (log events only),
  ``event:`` the kind, ``data:`` the event as one JSON line;
- a ``: heartbeat`` comment while idle (:data:`HEARTBEAT`).

Stream notices are ``diagnostic`` events without a cursor; their ``data.code`` is one of the
:data:`NoticeCode` values (or an error code of :mod:`worker_runtime.errors`, for a notice that
reports an error).
"""

from __future__ import annotations

import json
from typing import Final, Literal

from .events import Event, notice

__all__ = [
    "HEARTBEAT",
    "RESYNC_REQUIRED",
    "RUNTIME_SHUTDOWN",
    "RUNTIME_UNAVAILABLE",
    "NoticeCode",
    "encode_event",
    "notice",
    "retry_hint",
]

#: The codes a stream notice carries in ``data.code``.
NoticeCode = Literal["resync_required", "runtime_shutdown", "runtime_unavailable"]
#: The subscriber fell behind the backlog: the stream ends; re-read, then resubscribe.
RESYNC_REQUIRED: Final = "resync_required"
#: The Runtime is closing: the stream ends; reconnect with the last cursor.
RUNTIME_SHUTDOWN: Final = "runtime_shutdown"
#: A source could not be reached (the client's and the Backend's outage notices).
RUNTIME_UNAVAILABLE: Final = "runtime_unavailable"

#: The comment a stream sends while idle.
HEARTBEAT: Final = b": heartbeat\n\n"


def retry_hint(retry_ms: int) -> bytes:
    """The first message of a stream: the reconnect delay an EventSource should use."""
    return f"retry: {retry_ms}\n\n".encode()


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
