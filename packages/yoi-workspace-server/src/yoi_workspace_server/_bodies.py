"""What the Backend's routes accept beyond the Runtime's own request models
(:mod:`worker_runtime.http`: stop, cancel, the Worker list, transcript and diagnostics
queries), as pydantic models: the JSON bodies (unknown fields refused), the text rules they
apply, and the query strings."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ._stream import MAX_CURSOR_CHARS
from .cursors import MAX_CHARS

#: Bidirectional formatting characters (Trojan Source): they reorder how text is shown.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(value: str) -> str:
    """Refuse control characters (C0, DEL, C1), line separators and bidi overrides."""
    for ch in value:
        if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise ValueError("must not contain control or bidirectional formatting characters")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterRuntime(_Body):
    runtime_id: Annotated[str, Field(min_length=1, max_length=120)]
    display_name: (
        Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)] | None
    ) = None
    base_url: Annotated[str, Field(min_length=1, max_length=2000)]
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


class AllWorkersQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=1000)] = 1000


class AllEventsQuery(BaseModel):
    runtime_id: Annotated[str, Field(max_length=120)] | None = None
    worker_id: Annotated[str, Field(max_length=120)] | None = None
    kinds: Annotated[str, Field(max_length=1000)] | None = None
    cursor: Annotated[str, Field(max_length=MAX_CURSOR_CHARS)] | None = None


class WorkerEventsQuery(BaseModel):
    cursor: Annotated[str, Field(max_length=MAX_CHARS)] | None = None
