"""Cursors: the log's *incarnation* and an event's position, encoded as one opaque string."""

from __future__ import annotations

import secrets
import string
from typing import Final

from .errors import CursorMalformed

_INCARNATION_ALPHABET: Final = string.ascii_lowercase + string.digits
_INCARNATION_LEN: Final = 16


def new_incarnation() -> str:
    """A fresh random incarnation id (16 lowercase alphanumerics)."""
    return "".join(secrets.choice(_INCARNATION_ALPHABET) for _ in range(_INCARNATION_LEN))


def encode_cursor(incarnation: str, position: int) -> str:
    return f"{incarnation}-{position:x}"


def decode_cursor(cursor: str) -> tuple[str, int]:
    """Split a cursor into ``(incarnation, position)``; :class:`CursorMalformed` if it is not
    one."""
    incarnation, sep, pos = cursor.partition("-")
    if (
        not sep
        or len(incarnation) != _INCARNATION_LEN
        or not incarnation.isascii()
        or not incarnation.isalnum()
        or not 0 < len(pos) <= 16
        or any(c not in string.hexdigits for c in pos)
    ):
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]})
    return incarnation, int(pos, 16)
