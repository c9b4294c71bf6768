"""What the client sends and reads on the wire: request paths and parameters, and the Runtime's
replies (JSON bodies, error envelopes, models, SSE events) checked and turned into values or
typed errors. A reply that is not what the protocol says is ``runtime_unavailable``
(``bad_reply``): a remote is not trusted."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ._cursors import decode_cursor
from ._event import Event
from .errors import RuntimeUnavailable, WorkerRuntimeError, error_from_envelope
from .models import require_id

if TYPE_CHECKING:
    import httpx

M = TypeVar("M", bound=BaseModel)

#: What an event kind looks like (``turn_started``, ``output_delta`` …).
_KIND = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def _worker_path(worker_id: str, action: str | None = None) -> str:
    # Refuse what is not an id before anything goes on the wire; ids need no escaping.
    segment = require_id(worker_id, "worker_id")
    return f"/v1/workers/{segment}" + (f"/{action}" if action else "")


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _unavailable(reason: str) -> RuntimeUnavailable:
    message = {
        "timeout": "the Runtime did not answer in time",
        "unreachable": "the Runtime cannot be reached",
    }[reason]
    return RuntimeUnavailable(message, details={"reason": reason})


def _bad_reply() -> RuntimeUnavailable:
    """What a reply that is not what the protocol says becomes: the Runtime is unusable
    (for now), whatever it sent."""
    return RuntimeUnavailable(
        "the Runtime answered with a reply that is not valid", details={"reason": "bad_reply"}
    )


def _json_of(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        raise _bad_reply() from None


def _error_of(response: httpx.Response) -> WorkerRuntimeError:
    if response.status_code in (502, 503, 504):
        unreachable = RuntimeUnavailable(
            f"the Runtime answered {response.status_code}", details={"reason": "unreachable"}
        )
    else:
        unreachable = _bad_reply()
    try:
        body = _json_of(response)
    except RuntimeUnavailable:
        return unreachable
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return error_from_envelope(body)
    return unreachable


def _parse(model: type[M], value: Any, key: str | None = None) -> M:
    """``value`` (or its ``key`` member) as a ``model``; anything else is ``bad_reply``."""
    if key is not None:
        if not isinstance(value, dict):
            raise _bad_reply()
        value = value.get(key)
    try:
        return model.model_validate(value)
    except (ValidationError, RecursionError):
        raise _bad_reply() from None


def _event_of(data: str) -> Event:
    try:
        raw = json.loads(data)
        cursor = raw["cursor"]
        position = decode_cursor(cursor)[1] if cursor is not None else -1
        # The shape, checked: a remote is not trusted to send what the protocol says.
        if not (
            isinstance(raw["kind"], str)
            and _KIND.fullmatch(raw["kind"])  # it becomes an SSE `event:` line again
            and isinstance(raw["runtime_id"], str)
            and isinstance(raw["worker_id"], str | None)
            and isinstance(raw["turn_id"], str | None)
            and isinstance(raw["at"], str)
            and isinstance(raw["data"], dict)
        ):
            raise TypeError
        return Event(
            position=position,
            cursor=cursor,
            kind=raw["kind"],
            runtime_id=raw["runtime_id"],
            worker_id=raw["worker_id"],
            turn_id=raw["turn_id"],
            at=raw["at"],
            data=raw["data"],
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, WorkerRuntimeError):
        raise RuntimeUnavailable(
            "the Runtime sent an event that is not valid", details={"reason": "bad_reply"}
        ) from None
