"""The Runtime's request and response shapes (contract §1–§3, §6).

Requests are strict (unknown fields and wrong types are ``invalid_input``); responses are plain
models whose field names are the wire names.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidInput

__all__ = [
    "ID_PATTERN",
    "BuiltinProfile",
    "CancelAck",
    "CreateWorkerRequest",
    "Diagnostic",
    "EventPage",
    "InputAck",
    "InputRequest",
    "Limits",
    "NamedProfile",
    "ProfileInfo",
    "ProfileSelector",
    "RuntimeCounts",
    "RuntimeDefaultProfile",
    "RuntimeSummary",
    "StopAck",
    "TranscriptItem",
    "TranscriptPage",
    "TurnCounts",
    "Usage",
    "WorkerDetail",
    "WorkerOverview",
    "WorkerPage",
    "WorkerRef",
    "WorkerSummary",
    "is_valid_id",
    "require_id",
]

#: The character rule of ``runtime_id`` and ``worker_id``: 1–120 chars, not starting with ``.``.
ID_PATTERN = r"^[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,119}$"
_ID_RE = re.compile(ID_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

WorkerStatus = Literal["idle", "running", "stopped"]


#: What the id rule of contract §1 asks, in the words of every error that enforces it.
ID_RULE = "1-120 characters of [A-Za-z0-9._:-], not starting with '.'"


def is_valid_id(value: str) -> bool:
    """Whether ``value`` follows the id rule of contract §1."""
    return _ID_RE.fullmatch(value) is not None


def require_id(value: object, field: str) -> str:
    """``value`` if it is an id (contract §1), else ``invalid_input`` naming ``field``."""
    if not isinstance(value, str) or not is_valid_id(value):
        raise InvalidInput(f"{field} must be {ID_RULE}", details={"field": field})
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class Limits(BaseModel):
    """Bounds of a Runtime. Each is a hard limit, never silently clamped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_input_bytes: int = Field(default=256 * 1024, ge=1)
    max_queued_inputs: int = Field(default=16, ge=0)
    max_transcript_items: int = Field(default=256, ge=1)
    max_list_workers: int = Field(default=1000, ge=1)
    max_events_read: int = Field(default=1000, ge=1)
    max_diagnostics: int = Field(default=1000, ge=1)
    event_backlog: int = Field(default=4096, ge=1, description="events kept per Worker")
    runtime_event_window: int = Field(default=65536, ge=1, description="events kept runtime-wide")
    runtime_event_window_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="byte budget of the runtime-wide event window (approximate event sizes)",
    )
    max_workers: int = Field(default=10_000, ge=1, description="Workers a Runtime holds at most")
    max_idempotency_keys: int = Field(default=1024, ge=1, description="keys kept per Worker")
    max_name_chars: int = Field(default=200, ge=1)
    shutdown_grace_s: float = Field(default=10.0, ge=0)


class WorkerRef(BaseModel):
    """The authority for every Worker operation: ``{runtime_id, worker_id}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    runtime_id: Annotated[str, Field(pattern=ID_PATTERN)]
    worker_id: Annotated[str, Field(pattern=ID_PATTERN)]


class InputRequest(_Request):
    """Input to a Worker (contract §2). ``user`` input starts a turn; ``system`` input only adds
    context."""

    kind: Literal["user", "system"] = "user"
    content: Annotated[str, Field(min_length=1)]
    on_busy: Literal["reject", "enqueue"] = "reject"
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be empty or only whitespace")
        if "\x00" in value:
            raise ValueError("content must not contain NUL characters")
        return value


class RuntimeDefaultProfile(_Request):
    kind: Literal["runtime_default"]


class BuiltinProfile(_Request):
    kind: Literal["builtin"]
    name: Annotated[str, Field(min_length=1, max_length=120)]


class NamedProfile(_Request):
    kind: Literal["named"]
    name: Annotated[str, Field(min_length=1, max_length=120)]


ProfileSelector = Annotated[
    RuntimeDefaultProfile | BuiltinProfile | NamedProfile, Field(discriminator="kind")
]


class CreateWorkerRequest(_Request):
    """Create a Worker; ``initial_input`` is accepted in the same step."""

    profile: ProfileSelector = Field(
        default_factory=lambda: RuntimeDefaultProfile(kind="runtime_default")
    )
    name: str | None = None
    initial_input: InputRequest | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("name")
    @classmethod
    def _name_printable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("name must not be blank")
        if _CONTROL_RE.search(value):
            raise ValueError("name must not contain control characters")
        return value


class InputAck(_Response):
    worker_ref: WorkerRef
    turn_id: str | None
    queued: bool
    transcript_sequence: int
    cursor: str
    status: WorkerStatus


class StopAck(_Response):
    worker_ref: WorkerRef
    status: WorkerStatus
    cursor: str


class CancelAck(_Response):
    worker_ref: WorkerRef
    status: WorkerStatus
    cancelled_turn_id: str | None
    cursor: str


class ProfileInfo(_Response):
    name: str
    provider: str
    model: str | None


class ProfileEntry(_Response):
    """One profile a Worker may be created on (``GET /v1/profiles``): how to select it
    (``kind`` + ``name``), what it runs, and whether it is the runtime default. Never a
    credential, a key's variable name, a base URL or a file path."""

    name: str
    kind: Literal["builtin", "named"]
    provider: str
    model: str | None
    is_default: bool


class TurnCounts(_Response):
    total: int
    completed: int
    failed: int
    cancelled: int
    interrupted: int


class Usage(_Response):
    input_tokens: int
    output_tokens: int


class WorkerOverview(_Response):
    turns: TurnCounts
    usage: Usage
    transcript_len: int
    last_activity_at: str
    last_cursor: str


class WorkerSummary(_Response):
    worker_ref: WorkerRef
    runtime_id: str
    worker_id: str
    name: str | None
    status: WorkerStatus
    profile: str
    active_turn_id: str | None
    queued_inputs: int
    transcript_len: int
    last_cursor: str
    created_at: str
    #: The ``at`` of the Worker's newest event (its ``created_at`` before it has one).
    last_activity_at: str


class WorkerDetail(WorkerSummary):
    overview: WorkerOverview
    profile_info: ProfileInfo


class WorkerPage(_Response):
    workers: list[WorkerSummary]
    next_after: str | None


class TranscriptItem(_Response):
    sequence: int
    turn_id: str | None
    role: Literal["user", "system", "assistant", "error"]
    content: str
    cursor: str
    at: str
    partial: bool = False


class TranscriptPage(_Response):
    worker_ref: WorkerRef
    start: int
    limit: int
    total_items: int
    items: list[TranscriptItem]
    next_start: int | None
    cursor: str


class Diagnostic(_Response):
    id: str
    severity: Literal["info", "warning", "error"]
    code: str
    message: str
    worker_id: str | None
    at: str


class RuntimeCounts(_Response):
    workers: int
    idle: int
    running: int
    stopped: int


class RuntimeSummary(_Response):
    runtime_id: str
    display_name: str
    status: Literal["running", "stopping"]
    store: str
    incarnation: str
    capabilities: list[str]
    limits: Limits
    counts: RuntimeCounts
    diagnostics_count: int
    started_at: str
    subscribers: int = Field(description="live event subscriptions")


class EventPage(_Response):
    """A bounded read of the event log: the events after a cursor, oldest first."""

    events: list[dict[str, Any]]
    next_cursor: str
