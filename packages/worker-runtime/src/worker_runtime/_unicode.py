"""Text is valid Unicode once it enters yoi: lone UTF-16 surrogates become U+FFFD.

Some providers (or the proxies in front of them) split an astral character such as an emoji
into its two UTF-16 halves across two stream chunks; a JSON decoder then hands over strings
that hold a lone surrogate, which no UTF-8 encoder (and so no store) accepts.
"""

from __future__ import annotations

__all__ = ["DeltaText", "valid_text"]

REPLACEMENT = "\ufffd"


def _is_high(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


def valid_text(text: str) -> str:
    """``text`` with every surrogate pair joined and every lone surrogate replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class DeltaText:
    """Cleans a stream of deltas: a high surrogate at the end of one delta waits for the next,
    so an emoji split across two chunks arrives whole; anything left lone becomes U+FFFD."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        if text and _is_high(text[-1]):
            text, self._held = text[:-1], text[-1]
        return valid_text(text)

    def finish(self) -> str:
        """What is still held (a lone high surrogate becomes U+FFFD)."""
        held, self._held = self._held, ""
        return valid_text(held)
