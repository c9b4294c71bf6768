"""The kinds of event and the typed shape of each kind's ``data`` (contract §3).

:data:`EventKind` names every kind once; the Runtime builds each event's ``data`` as the
``TypedDict`` of its kind, so a field that is missing or misspelled is a type error.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired, TypedDict

__all__ = ["TERMINAL_KINDS", "EventData", "EventKind"]

#: Every kind of event in the log (contract §3); stream notices are ``diagnostic`` events.
EventKind = Literal[
    "runtime_started",
    "worker_created",
    "input_accepted",
    "input_discarded",
    "turn_started",
    "output_delta",
    "message_completed",
    "turn_completed",
    "turn_failed",
    "turn_cancelled",
    "turn_interrupted",
    "worker_stopped",
    "diagnostic",
]

#: The kinds that end a turn: every turn ends with exactly one of them.
TERMINAL_KINDS: Final = frozenset(
    ("turn_completed", "turn_failed", "turn_cancelled", "turn_interrupted")
)


# -- each kind's data ------------------------------------------------------------------------


class IdempotencyData(TypedDict):
    """What a command's event records of its idempotency key: the key and its body digest."""

    key: str
    body: str


class RuntimeStartedData(TypedDict):
    incarnation: str
    recovered_turns: int


class WorkerCreatedData(TypedDict):
    worker: dict[str, Any]  # the Worker's summary, as JSON
    idempotency: NotRequired[IdempotencyData]


class InputAcceptedData(TypedDict):
    input_kind: Literal["user", "system"]
    content: str
    transcript_sequence: int
    queued: bool
    idempotency: NotRequired[IdempotencyData]


class InputDiscardedData(TypedDict):
    transcript_sequence: int
    reason: str


class TurnStartedData(TypedDict):
    profile: str
    model: str | None


class OutputDeltaData(TypedDict):
    text: str


class MessageCompletedData(TypedDict):
    role: Literal["assistant"]
    content: str
    transcript_sequence: int
    partial: NotRequired[bool]


class UsageData(TypedDict):
    input_tokens: int
    output_tokens: int


class TurnCompletedData(TypedDict):
    usage: UsageData
    duration_ms: float


class ErrorData(TypedDict):
    code: str
    message: str
    details: NotRequired[dict[str, Any]]


class TurnFailedData(TypedDict):
    error: ErrorData
    transcript_sequence: int


class ReasonData(TypedDict):
    """The data of ``turn_cancelled``, ``turn_interrupted`` and ``worker_stopped``."""

    reason: str


class DiagnosticData(TypedDict):
    severity: Literal["info", "warning", "error"]
    code: str
    message: str


#: The data of any event the Runtime emits.
EventData = (
    RuntimeStartedData
    | WorkerCreatedData
    | InputAcceptedData
    | InputDiscardedData
    | TurnStartedData
    | OutputDeltaData
    | MessageCompletedData
    | TurnCompletedData
    | TurnFailedData
    | ReasonData
    | DiagnosticData
)
