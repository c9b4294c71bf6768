"""The JSON bodies the Backend's routes accept, as pydantic models (unknown fields refused),
and the text rules they apply."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


class StopBody(_Body):
    reason: Annotated[str, Field(max_length=1000)] | None = None


class CancelBody(_Body):
    turn_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None


def _header_text(value: str | None) -> str | None:
    """A header as the client sent it: Starlette decodes headers as Latin-1, browsers send
    UTF-8."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value
