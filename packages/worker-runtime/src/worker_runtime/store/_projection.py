"""Projections of the event log: a Worker's transcript entries and its state.

The event log is the source of truth. A Worker's transcript and its model history are
projections of its events, computed by the pure functions here; its state (status, active turn,
queue, counters) is :class:`worker_runtime.state.WorkerState`, re-exported here for the stores.
Stores use them live (as events are appended) and to rebuild after a restart, so the two paths
cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..execution import ContextMessage
from ..state import QueuedRecord, WorkerState
from . import TranscriptEntry

__all__ = ["QueuedRecord", "TurnMarker", "WorkerState", "rebuild_history", "transcript_entry"]


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
