"""Projections of the event log: a Worker's transcript entries and its state.

The event log is the source of truth. A Worker's transcript, state (status, active turn, queue)
and overview (counters, usage) are projections of its events, computed by the pure functions
here. Stores use them live (as events are appended) and to rebuild after a restart, so the two
paths cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..execution import ContextMessage
from . import TranscriptEntry

__all__ = ["QueuedRecord", "TurnMarker", "WorkerState", "rebuild_history", "transcript_entry"]

_TERMINAL = {
    "turn_completed": "completed",
    "turn_failed": "failed",
    "turn_cancelled": "cancelled",
    "turn_interrupted": "interrupted",
}


def transcript_entry(
    kind: str, turn_id: str | None, cursor: str, at: str, data: dict[str, Any]
) -> TranscriptEntry | None:
    """The transcript entry an event commits, if any."""
    if kind == "input_accepted":
        role: Literal["user", "system"] = "user" if data["input_kind"] == "user" else "system"
        return TranscriptEntry(
            data["transcript_sequence"], turn_id, role, data["content"], cursor, at
        )
    if kind == "message_completed":
        return TranscriptEntry(
            data["transcript_sequence"],
            turn_id,
            "assistant",
            data["content"],
            cursor,
            at,
            bool(data.get("partial", False)),
        )
    if kind == "turn_failed" and "transcript_sequence" in data:
        error = data["error"]
        return TranscriptEntry(
            data["transcript_sequence"],
            turn_id,
            "error",
            f"{error['code']}: {error['message']}",
            cursor,
            at,
        )
    return None


@dataclass(frozen=True, slots=True)
class TurnMarker:
    """Where a turn started in the conversation (its user input joins the model context)."""

    turn_id: str


def rebuild_history(items: list[TranscriptEntry | TurnMarker]) -> list[ContextMessage]:
    """The conversation in model order from transcript entries and turn-start markers: a
    system input where it was accepted, a user input where its turn started, assistant
    messages where they were committed; error entries are not model messages."""
    pending: dict[str, str] = {}
    history: list[ContextMessage] = []
    for item in items:
        if isinstance(item, TurnMarker):
            content = pending.pop(item.turn_id, None)
            if content is not None:
                history.append(ContextMessage("user", content))
        elif item.role == "user":
            pending[item.turn_id or ""] = item.content
        elif item.role == "system":
            history.append(ContextMessage("system", item.content))
        elif item.role == "assistant" and item.content:
            history.append(ContextMessage("assistant", item.content))
    return history


@dataclass
class QueuedRecord:
    turn_id: str
    transcript_sequence: int
    content: str


@dataclass
class WorkerState:
    """The projection of one Worker's events: everything the Runtime needs to restore it."""

    worker_id: str
    position: int = 0  # the newest event applied
    status: str = "idle"
    active_turn_id: str | None = None
    active_input_sequence: int = 0
    queue: list[QueuedRecord] = field(default_factory=list)
    transcript_len: int = 0
    turns_total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    interrupted: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    last_activity_at: str = ""
    last_cursor: str = ""
    stop_cursor: str | None = None
    #: The idempotency keys of accepted inputs, oldest first, each
    #: ``[key, body_digest, turn_id, queued, transcript_sequence, cursor]``.
    input_keys: list[list[Any]] = field(default_factory=list)
    #: ``[key, body_digest]`` when the Worker was created with an idempotency key.
    create_key: list[str] | None = None

    def apply(
        self,
        position: int,
        kind: str,
        turn_id: str | None,
        cursor: str,
        at: str,
        data: dict[str, Any],
        *,
        keys: int = 1024,
    ) -> None:
        """Apply one of this Worker's events (idempotent for positions already applied);
        at most ``keys`` input idempotency keys are kept, the oldest forgotten first."""
        if position <= self.position:
            return
        self.position = position
        self.last_cursor = cursor
        self.last_activity_at = at
        key = data.get("idempotency")
        if isinstance(key, dict):
            if kind == "worker_created":
                self.create_key = [str(key["key"]), str(key["body"])]
            elif kind == "input_accepted":
                self.input_keys.append(
                    [
                        key["key"],
                        key["body"],
                        turn_id,
                        bool(data.get("queued")),
                        data["transcript_sequence"],
                        cursor,
                    ]
                )
                if len(self.input_keys) > keys:
                    del self.input_keys[: len(self.input_keys) - keys]
        if kind == "input_accepted":
            self.transcript_len = max(self.transcript_len, data["transcript_sequence"])
            if data["input_kind"] == "user" and data.get("queued"):
                self.queue.append(
                    QueuedRecord(turn_id or "", data["transcript_sequence"], data["content"])
                )
            elif data["input_kind"] == "user":
                # Its turn is open from here: if the process dies before turn_started is
                # written, recovery still ends that turn (interrupted), never leaves it hanging.
                self.active_input_sequence = data["transcript_sequence"]
                self.active_turn_id = turn_id
                self.status = "running"
        elif kind == "turn_started":
            if self.queue and self.queue[0].turn_id == turn_id:
                self.active_input_sequence = self.queue.pop(0).transcript_sequence
            self.active_turn_id = turn_id
            self.status = "running"
            self.turns_total += 1
        elif kind in ("message_completed", "turn_failed"):
            sequence = data.get("transcript_sequence")
            if sequence is not None:
                self.transcript_len = max(self.transcript_len, sequence)
        if kind in _TERMINAL:
            outcome = _TERMINAL[kind]
            setattr(self, outcome, getattr(self, outcome) + 1)
            if kind == "turn_completed":
                usage = data.get("usage") or {}
                self.input_tokens += int(usage.get("input_tokens", 0))
                self.output_tokens += int(usage.get("output_tokens", 0))
            self.active_turn_id = None
            self.active_input_sequence = 0
            if self.status == "running":
                self.status = "idle"
        elif kind == "input_discarded":
            self.queue = [q for q in self.queue if q.turn_id != turn_id]
        elif kind == "worker_stopped":
            self.status = "stopped"
            self.stop_cursor = cursor
            self.queue = []

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WorkerState:
        queue = [QueuedRecord(**q) for q in raw.get("queue", [])]
        return cls(**{**raw, "queue": queue})
