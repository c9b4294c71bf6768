"""Backend cursors: the only cursors a browser ever holds.

A Runtime's cursor names a position in that Runtime's log; a browser holds a
:data:`BackendCursor` instead (``b1.`` + base64url of ``runtime_id``, a newline and the
Runtime's cursor), so it resumes through the Backend, and one runtime's cursor is never taken
for another's.

Cursors are a **type**, not a key name. Every Backend response that carries a Runtime's
models is a *browser model* (:class:`BrowserInputAck`, :class:`BrowserWorkerPage` …): the
library's model with each cursor field typed :data:`BackendCursor`. :func:`for_browser` builds
one from the library's model, converting by those types; a browser model that declares a
field named like a cursor with any other type is refused when it is defined
(:func:`browser_model`), so a cursor field the library adds cannot reach a browser
unconverted.
"""

from __future__ import annotations

import base64
import binascii
import types
import typing
from typing import Any, NewType, TypeVar, Union, cast

from pydantic import BaseModel

from worker_runtime import (
    CancelAck,
    CursorExpired,
    CursorMalformed,
    CursorUnknown,
    InputAck,
    StopAck,
    TranscriptItem,
    TranscriptPage,
    WorkerDetail,
    WorkerOverview,
    WorkerPage,
    WorkerSummary,
)

__all__ = [
    "BackendCursor",
    "BrowserCancelAck",
    "BrowserInputAck",
    "BrowserStopAck",
    "BrowserTranscriptPage",
    "BrowserWorkerDetail",
    "BrowserWorkerPage",
    "BrowserWorkerSummary",
    "browser_model",
    "for_browser",
    "unwrap_cursor",
    "wrap_cursor",
]

#: A cursor a browser may hold: made by :func:`wrap_cursor` only.
BackendCursor = NewType("BackendCursor", str)

_PREFIX = "b1."
#: The longest per-runtime Backend cursor accepted.
MAX_CHARS = 400


def wrap_cursor(runtime_id: str, cursor: str) -> BackendCursor:
    """The Backend cursor of ``runtime_id``'s cursor ``cursor``."""
    raw = f"{runtime_id}\n{cursor}".encode()
    return BackendCursor(_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("="))


def wrap_error_cursors(runtime_id: str, error: BaseException) -> None:
    """Give ``error`` Backend cursors in place of ``runtime_id``'s: the one error that names
    a cursor, ``cursor_expired``, carries the oldest retained event as
    ``details.oldest_cursor``, which a browser must only see as a Backend cursor."""
    if isinstance(error, CursorExpired):
        oldest = error.details.get("oldest_cursor")
        if isinstance(oldest, str) and oldest:
            error.details["oldest_cursor"] = wrap_cursor(runtime_id, oldest)


def unwrap_cursor(runtime_id: str, cursor: str) -> str:
    """The runtime cursor inside a Backend cursor of ``runtime_id``: ``cursor_malformed`` if
    it is not a Backend cursor, ``cursor_unknown`` if it is another runtime's."""
    if not cursor.startswith(_PREFIX) or len(cursor) > MAX_CHARS:
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]})
    body = cursor[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]}) from None
    owner, sep, inner = raw.partition("\n")
    if not sep or not inner:
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]})
    if owner != runtime_id:
        raise CursorUnknown("the cursor belongs to another runtime", details={"cursor": cursor})
    return inner


# -- browser models --------------------------------------------------------------------------

B = TypeVar("B", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

#: The browser model of each library model that has one.
_BROWSER: dict[type[BaseModel], type[BaseModel]] = {}


def _is_cursor(annotation: Any) -> bool:
    """Whether ``annotation`` is :data:`BackendCursor` or ``BackendCursor | None``."""
    if annotation is BackendCursor:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args == [BackendCursor]
    return False


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (``X``, ``list[X]``, ``X | None`` …)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def browser_model(cls: type[B]) -> type[B]:
    """Register ``cls`` as the browser model of its library base class, after checking that
    no cursor can cross it unconverted: every field named like a cursor is
    :data:`BackendCursor`, and every model it nests is a browser model or holds no cursor
    field. Raises ``TypeError`` at definition otherwise."""
    for name, field in cls.model_fields.items():
        if "cursor" in name and not _is_cursor(field.annotation):
            raise TypeError(f"{cls.__name__}.{name} must be typed BackendCursor")
        for nested in _models_in(field.annotation):
            if nested not in _BROWSER.values():
                _refuse_cursors(nested, f"{cls.__name__}.{name}")
    base = next(b for b in cls.__mro__[1:] if issubclass(b, BaseModel) and b not in _BROWSER)
    _BROWSER[base] = cls
    return cls


def _refuse_cursors(model: type[BaseModel], where: str) -> None:
    """``TypeError`` if ``model`` (a library model nested in a browser model) or a model it
    nests has a field named like a cursor: it needs a browser model of its own."""
    for name, field in model.model_fields.items():
        if "cursor" in name:
            raise TypeError(f"{where} nests {model.__name__}.{name}: give it a browser model")
        for nested in _models_in(field.annotation):
            _refuse_cursors(nested, where)


def for_browser(runtime_id: str, value: BaseModel, target: type[M]) -> M:
    """``value`` (a library model) as its browser model ``target``, every
    :data:`BackendCursor` field wrapped for ``runtime_id``."""
    if _BROWSER.get(type(value)) is not target:
        raise TypeError(f"{type(value).__name__} has no browser model {target.__name__}")
    return cast(M, _browser(runtime_id, value))


def _browser(runtime_id: str, value: BaseModel) -> BaseModel:
    target = _BROWSER[type(value)]
    fields = {
        name: _convert(runtime_id, getattr(value, name), field.annotation)
        for name, field in target.model_fields.items()
    }
    return target.model_construct(**fields)


def _convert(runtime_id: str, value: Any, annotation: Any) -> Any:
    if value is None:
        return None
    if _is_cursor(annotation):
        return wrap_cursor(runtime_id, value)
    if isinstance(value, BaseModel):
        return _browser(runtime_id, value) if type(value) in _BROWSER else value
    if isinstance(value, list):
        (item,) = typing.get_args(annotation) or (Any,)
        return [_convert(runtime_id, v, item) for v in value]
    return value


@browser_model
class BrowserInputAck(InputAck):
    cursor: BackendCursor


@browser_model
class BrowserStopAck(StopAck):
    cursor: BackendCursor


@browser_model
class BrowserCancelAck(CancelAck):
    cursor: BackendCursor


@browser_model
class BrowserWorkerOverview(WorkerOverview):
    last_cursor: BackendCursor


@browser_model
class BrowserWorkerSummary(WorkerSummary):
    last_cursor: BackendCursor


@browser_model
class BrowserWorkerDetail(WorkerDetail):
    last_cursor: BackendCursor
    overview: BrowserWorkerOverview


@browser_model
class BrowserWorkerPage(WorkerPage):
    workers: list[BrowserWorkerSummary]  # type: ignore[assignment]


@browser_model
class BrowserTranscriptItem(TranscriptItem):
    cursor: BackendCursor


@browser_model
class BrowserTranscriptPage(TranscriptPage):
    items: list[BrowserTranscriptItem]  # type: ignore[assignment]
    cursor: BackendCursor
