"""The builtin ``echo`` backend: a deterministic offline stand-in for a model.

It streams the turn's user input back one whitespace-separated word per delta (each word keeps
its following whitespace, and the first keeps any leading whitespace, so the deltas concatenate
to the input exactly). With ``chunk_delay_ms`` it pauses before each delta, so a turn can be
cancelled mid-way.

Usage is counted in whitespace-separated words, not model tokens: ``input_tokens`` is the number
of words of the whole context sent for the turn (system prompt and every message),
``output_tokens`` the number of words produced.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio

from . import TextDelta, TurnRequest, TurnUsage

__all__ = ["EchoBackend", "split_words"]

_WORD = re.compile(r"\s*\S+\s*")


def split_words(text: str) -> list[str]:
    """Split ``text`` into word chunks that concatenate back to it exactly."""
    return _WORD.findall(text)


class EchoBackend:
    """Echoes the last user message back, word by word."""

    async def stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        delay_ms = request.profile.chunk_delay_ms or 0.0
        words = split_words(user)
        for word in words:
            if delay_ms:
                await anyio.sleep(delay_ms / 1000)
            yield TextDelta(word)
        input_tokens = sum(len(m.content.split()) for m in request.messages)
        yield TurnUsage(input_tokens=input_tokens, output_tokens=len(words))
