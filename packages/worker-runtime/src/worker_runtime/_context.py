"""The context policy (private): what a turn's model sees of its Worker's conversation.

A Worker's history is the conversation in the order the model sees it: system inputs when
accepted, a user input when its turn starts, assistant messages when committed. A turn's context
is the profile's system prompt, then the prefix of the history that existed when the turn
started (its own input last), fitted under the profile's ``context_tokens`` budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, overload

from ._worker import NO_HISTORY, Turn, Worker
from .execution import ContextMessage
from .store import HistoryMark, RuntimeStore

__all__ = ["ContextPolicy", "estimate_tokens", "fit_context"]


class _Unread(list[ContextMessage]):
    """A recovered Worker's history whose start (its conversation before this process
    started keeping it) is still in the store, up to ``mark``: read by its next turn, off the
    event loop, and put in front."""

    __slots__ = ("mark",)

    def __init__(self, mark: HistoryMark) -> None:
        super().__init__()
        self.mark = mark


class _ContextView(Sequence[ContextMessage]):
    """A read-only view of ``[prompt?] + history[:length]``."""

    __slots__ = ("_history", "_length", "_prompt")

    def __init__(
        self, prompt: ContextMessage | None, history: list[ContextMessage], length: int
    ) -> None:
        self._prompt = prompt
        self._history = history
        self._length = length

    def __len__(self) -> int:
        return self._length + (1 if self._prompt is not None else 0)

    @overload
    def __getitem__(self, index: int) -> ContextMessage: ...

    @overload
    def __getitem__(self, index: slice) -> list[ContextMessage]: ...

    def __getitem__(self, index: int | slice) -> ContextMessage | list[ContextMessage]:
        size = self._length if self._prompt is None else self._length + 1
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(size))]
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(index)
        return self._at(index)

    def _at(self, index: int) -> ContextMessage:
        """The message at ``index`` (from 0, in range)."""
        if self._prompt is not None:
            if index == 0:
                return self._prompt
            index -= 1
        return self._history[index]

    def __iter__(self) -> Iterator[ContextMessage]:
        if self._prompt is not None:
            yield self._prompt
        history = self._history
        for i in range(self._length):
            yield history[i]

    def __reversed__(self) -> Iterator[ContextMessage]:
        history = self._history
        for i in range(self._length - 1, -1, -1):
            yield history[i]
        if self._prompt is not None:
            yield self._prompt

    def __repr__(self) -> str:
        return f"ContextView({list(self)!r})"


def estimate_tokens(message: ContextMessage) -> int:
    """A provider-independent token estimate: about four characters a token, plus a few for
    the message's framing. Good enough to keep a context under a budget."""
    return (len(message.content) + 3) // 4 + 4


def fit_context(
    messages: Sequence[ContextMessage], budget: int, *, has_prompt: bool
) -> list[ContextMessage]:
    """``messages`` under ``budget`` estimated tokens: the oldest conversation entries are
    left out first; the system prompt (first, when ``has_prompt``) and the last message (the
    turn's input) are always kept, even when they alone exceed the budget."""
    if len(messages) <= (2 if has_prompt else 1):
        return list(messages)
    head = [messages[0]] if has_prompt else []
    body = list(messages[len(head) : -1])
    last = messages[-1]
    used = sum(estimate_tokens(m) for m in head) + estimate_tokens(last)
    kept: list[ContextMessage] = []
    for message in reversed(body):
        used += estimate_tokens(message)
        if used > budget:
            break
        kept.append(message)
    kept.reverse()
    return [*head, *kept, last]


class ContextPolicy:
    """Keeps each Worker's history and builds each turn's context from it."""

    def __init__(self, store: RuntimeStore) -> None:
        self._store = store

    def add(self, w: Worker, role: Literal["system", "assistant"], content: str) -> None:
        """A system input or an assistant message joins the history (a recovered Worker's
        conversation before its first turn here is in the store, which has this one too)."""
        if w.history is not None:
            self._own(w).append(ContextMessage(role, content))

    def start(self, w: Worker, content: str) -> int:
        """A turn's user input joins the history; returns the length of the turn's context
        (:meth:`read` adds what a recovered Worker's store still holds)."""
        if w.history is None:  # a recovered Worker: its conversation so far is read by the turn
            w.history = _Unread(self._store.mark_history(w.worker_id))
        history = self._own(w)
        history.append(ContextMessage("user", content))
        return len(history)

    async def read(self, w: Worker, turn: Turn) -> None:
        """Put a recovered Worker's conversation from the store in front of what this process
        kept of it (once; bounded by the context budget; off the event loop). A turn cancelled
        meanwhile leaves it for the next turn."""
        unread = w.history
        if not isinstance(unread, _Unread):
            return
        read = await self._store.read_history(unread.mark, w.profile.context_tokens)
        if w.history is unread:
            w.history = [*read, *unread]
            turn.context_len += len(read)

    @staticmethod
    def _own(w: Worker) -> list[ContextMessage]:
        """The Worker's history as a list of its own (not the shared empty one)."""
        history = w.history
        if history is None or history is NO_HISTORY:
            history = w.history = []
        return history

    def context(self, w: Worker, turn: Turn) -> Sequence[ContextMessage]:
        """The model context of a turn: the profile's system prompt, then the conversation as
        it stood when the turn started (its own input last). A view, not a copy: the history
        only ever grows by appending."""
        prompt = w.profile.system_prompt
        view = _ContextView(
            ContextMessage("system", prompt) if prompt else None, w.history or [], turn.context_len
        )
        budget = w.profile.context_tokens
        return view if budget is None else fit_context(view, budget, has_prompt=bool(prompt))
