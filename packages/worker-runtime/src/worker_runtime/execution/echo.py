"""The builtin ``echo`` backend: a deterministic offline stand-in for a model.

It streams the turn's user input back one whitespace-separated word per delta (each word keeps
its following whitespace, and the first keeps any leading whitespace, so the deltas concatenate
to the input exactly). With ``chunk_delay_ms`` it pauses before each delta, so a turn can be
cancelled mid-way. Without a delay it still yields to the event loop every
:data:`YIELD_EVERY` deltas, so a long input never stalls the process's other clients.

Usage is counted in whitespace-separated words, not model tokens: ``input_tokens`` is the number
of words of the whole context sent for the turn (system prompt and every message),
``output_tokens`` the number of words produced.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

from . import ContextMessage, TextDelta, TurnRequest, TurnUsage

__all__ = ["EchoBackend", "split_words"]

_WORD = re.compile(r"\s*\S+\s*")

#: With no delay, let the event loop run other tasks after this many deltas.
YIELD_EVERY = 256


def split_words(text: str) -> list[str]:
    """Split ``text`` into word chunks that concatenate back to it exactly."""
    return _WORD.findall(text)


class EchoBackend:
    """Echoes the last user message back, word by word.

    A Worker's context only grows by appending, so the word count of the context is kept per
    Worker and extended with the new messages (checked by identity; anything else is counted
    afresh), instead of recounting the whole conversation every turn.
    """

    def __init__(self) -> None:
        self._counted: dict[str, tuple[int, ContextMessage, int]] = {}

    def _context_words(self, request: TurnRequest) -> int:
        messages = request.messages
        size = len(messages)
        key = request.worker_ref.worker_id
        start, total = 0, 0
        memo = self._counted.get(key)
        if memo is not None:
            index, last, words = memo
            if index < size and messages[index] is last:
                start, total = index + 1, words
        newest = 0  # the words of the last message
        for message in messages[start:]:
            newest = len(message.content.split())
            total += newest
        # Remember the last message but one: the last is this turn's input, and a profile's
        # system prompt (index 0) is rebuilt every turn, so skip it too.
        index = size - 2
        if index >= 1:
            if start == size:  # nothing new: the last message was counted before
                newest = len(messages[-1].content.split())
            self._counted[key] = (index, messages[index], total - newest)
        return total

    async def stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        delay_ms = request.profile.chunk_delay_ms or 0.0
        words = split_words(user)
        for count, word in enumerate(words, 1):
            if delay_ms:
                await anyio.sleep(delay_ms / 1000)
            elif count % YIELD_EVERY == 0:
                await anyio.lowlevel.checkpoint()
            yield TextDelta(word)
        yield TurnUsage(input_tokens=self._context_words(request), output_tokens=len(words))
