"""One entry of the event log (:class:`Event`), stream notices, and the log's timestamps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_stamp_second = -1
_stamp_format = ""


def now_rfc3339() -> str:
    """The current time as RFC 3339 UTC with microseconds and a ``Z`` suffix."""
    global _stamp_second, _stamp_format
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    if second != _stamp_second:
        # The format of this second's stamps: its date and time, then the microseconds.
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _stamp_format = stamp + ".%06dZ"
        _stamp_second = second
    return _stamp_format % micro


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event log.

    ``position`` orders events inside one incarnation and is for the Runtime's own use; clients
    use ``cursor``. Stream notices (``resync_required``, ``runtime_shutdown``) are ``diagnostic``
    events that are not part of the log: their ``cursor`` is ``None``.
    """

    position: int
    cursor: str | None
    kind: str  # an EventKind; str, as a client may read kinds a newer Runtime adds
    runtime_id: str
    worker_id: str | None
    turn_id: str | None
    at: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The wire shape: ``{cursor, kind, runtime_id, worker_id, turn_id, at, data}``."""
        return {
            "cursor": self.cursor,
            "kind": self.kind,
            "runtime_id": self.runtime_id,
            "worker_id": self.worker_id,
            "turn_id": self.turn_id,
            "at": self.at,
            "data": self.data,
        }


def notice(
    runtime_id: str,
    worker_id: str | None,
    code: str,
    message: str,
    *,
    position: int = -1,
    **details: Any,
) -> Event:
    """A stream notice (``resync_required``, ``runtime_shutdown``, ``runtime_unavailable`` …):
    a ``diagnostic`` event that is not part of any log, so it has no cursor."""
    return Event(
        position,
        None,
        "diagnostic",
        runtime_id,
        worker_id,
        None,
        now_rfc3339(),
        {"severity": "warning", "code": code, "message": message, **details},
    )


def _approx_size(value: Any, depth: int = 0) -> int:
    """A cheap estimate of an event's retained bytes: its strings' lengths plus a small
    per-item overhead (nesting deeper than a few levels is counted flat)."""
    if isinstance(value, dict):
        if depth > 4:
            return 64 * len(value)
        size = 64 + 48 * len(value)
        for key, item in value.items():  # the hot path: a flat dict of short scalars
            size += len(key)
            kind = type(item)
            if kind is str:
                size += 56 + len(item)
            elif kind is int or kind is bool or kind is float or item is None:
                size += 32
            elif isinstance(item, dict | list | tuple | str):
                size += _approx_size(item, depth + 1)
            else:
                size += 32
        return size
    if isinstance(value, str):
        return 56 + len(value)
    if isinstance(value, list | tuple):
        if depth > 4:
            return 64 * len(value)
        return 56 + sum(8 + _approx_size(v, depth + 1) for v in value)
    return 32
