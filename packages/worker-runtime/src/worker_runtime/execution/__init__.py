"""Execution backends: what produces a turn's assistant output (contract §9).

An execution backend is a small async interface: given a :class:`TurnRequest` (the Worker's
context and profile) it yields :class:`TextDelta` items as the model streams, then at most one
:class:`TurnUsage`. It must honour cancellation promptly: when the Runtime cancels a turn, the
backend's iterator is cancelled at its next await and must abort the model call. A typed
failure is raised as an :class:`~worker_runtime.errors.ExecutionError`.

The Runtime never invents assistant output: only an execution backend produces it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from ..models import WorkerRef
from ..profiles import Profile

__all__ = ["ContextMessage", "ExecutionBackend", "TextDelta", "TurnRequest", "TurnUsage"]


@dataclass(frozen=True, slots=True)
class ContextMessage:
    """One message of a turn's model context."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """What a backend gets for one turn. ``messages`` ends with the turn's user input; the
    profile's system prompt, when it has one, comes first."""

    worker_ref: WorkerRef
    turn_id: str
    profile: Profile
    messages: Sequence[ContextMessage] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of streamed assistant text."""

    text: str


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """Token usage of the turn, as the backend counts it."""

    input_tokens: int
    output_tokens: int


@runtime_checkable
class ExecutionBackend(Protocol):
    """Streams one turn's output. Implementations must be safe to call for many turns at
    once."""

    def stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        """Yield the turn's deltas, then its usage; raise ``ExecutionError`` on failure."""
        ...
