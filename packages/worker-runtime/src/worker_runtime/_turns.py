"""Turns (private): accepting input, running a turn in its cancel scope, settling it."""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, overload

from ._engine import Engine
from ._unicode import DeltaText
from ._worker import IdempotencyCache, QueuedInput, Turn, Worker, fingerprint, key_data
from .errors import (
    ExecutionError,
    WorkerBusy,
    WorkerRuntimeError,
    WorkerStopped,
)
from .execution import ContextMessage, TextDelta, TurnRequest, TurnUsage
from .models import (
    InputAck,
    InputRequest,
)
from .store import HistoryMark

__all__ = ["Turns"]

log = logging.getLogger("worker_runtime")


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
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
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


class Turns(Engine):
    """Input acceptance and the turn lifecycle."""

    # -- internals: commands -----------------------------------------------------------------

    def _accept_input(self, w: Worker, req: InputRequest) -> InputAck:
        """Decide and record an input synchronously (no await), returning its ack."""
        if w.status == "stopped" or w.stop_done is not None:
            raise WorkerStopped("the Worker is stopped", details={"worker_id": w.worker_id})
        sequence = w.transcript_len + 1
        if req.kind == "system":
            cursor = self._emit(
                "input_accepted",
                w,
                None,
                {
                    "input_kind": "system",
                    "content": req.content,
                    "transcript_sequence": sequence,
                    "queued": False,
                    **key_data(req),
                },
            )
            w.transcript_len += 1
            if w.history is not None:
                w.history.append(ContextMessage("system", req.content))
            ack = self._ack(w, None, False, sequence, cursor)
        else:
            active = w.active
            queued = active is not None
            if active is not None:
                if req.on_busy == "reject":
                    raise WorkerBusy(
                        "the Worker is running a turn",
                        details={"active_turn_id": active.turn_id},
                    )
                if w.queued >= self._limits.max_queued_inputs:
                    raise WorkerBusy(
                        "the Worker's input queue is full",
                        details={
                            "active_turn_id": active.turn_id,
                            "max_queued_inputs": self._limits.max_queued_inputs,
                        },
                    )
            turn_id = "turn_" + secrets.token_hex(8)
            cursor = self._emit(
                "input_accepted",
                w,
                turn_id,
                {
                    "input_kind": "user",
                    "content": req.content,
                    "transcript_sequence": sequence,
                    "queued": queued,
                    **key_data(req),
                },
            )
            w.transcript_len += 1
            if queued:
                if w.queue is None:
                    w.queue = deque()
                w.queue.append(QueuedInput(turn_id, sequence, req.content))
            else:
                self._start_turn(w, turn_id, sequence, req.content)
            ack = self._ack(w, turn_id, queued, sequence, cursor)
        if req.idempotency_key is not None:
            if w.idempotency is None:
                w.idempotency = IdempotencyCache(self._limits.max_idempotency_keys)
            w.idempotency.put(req.idempotency_key, fingerprint(req), ack)
        return ack

    def _ack(
        self, w: Worker, turn_id: str | None, queued: bool, sequence: int, cursor: str
    ) -> InputAck:
        return InputAck(
            worker_ref=w.ref(self._runtime_id),
            turn_id=turn_id,
            queued=queued,
            transcript_sequence=sequence,
            cursor=cursor,
            status=w.status,
        )

    # -- internals: turns --------------------------------------------------------------------

    def _start_turn(self, w: Worker, turn_id: str, input_sequence: int, content: str) -> None:
        if w.history is None:  # a recovered Worker: its conversation so far is read by the turn
            w.history = _Unread(self._store.mark_history(w.worker_id))
        w.history.append(ContextMessage("user", content))
        turn = Turn(turn_id, input_sequence, time.monotonic(), len(w.history))
        w.active = turn
        w.turns_total += 1
        self._set_status(w, "running")
        self._emit(
            "turn_started",
            w,
            turn_id,
            {
                "profile": w.profile.name,
                "model": w.profile.info.model,
            },
        )
        assert self._tg is not None
        self._tg.start_soon(self._run_turn, w, turn, name=f"turn {turn_id}")

    async def _run_turn(self, w: Worker, turn: Turn) -> None:
        parts: list[str] = []
        usage: TurnUsage | None = None
        failure: tuple[str, str, dict[str, Any]] | None = None
        try:
            with turn.scope:
                await self._read_history(w, turn)
                request = TurnRequest(
                    worker_ref=w.ref(self._runtime_id),
                    turn_id=turn.turn_id,
                    profile=w.profile,
                    messages=self._context(w, turn),
                )
                stream = self._backends[w.profile.provider].stream(request)
                cleaner = DeltaText()  # the provider boundary: only valid Unicode gets in
                try:
                    async for item in stream:
                        if isinstance(item, TextDelta):
                            self._stream_text(w, turn, parts, cleaner.feed(item.text))
                        elif isinstance(item, TurnUsage):
                            usage = item
                    self._stream_text(w, turn, parts, cleaner.finish())
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
        except ExecutionError as exc:
            failure = (exc.code, exc.message, dict(exc.details))
        except Exception:
            log.exception("execution backend failed", extra={"turn_id": turn.turn_id})
            failure = ("internal_error", "the execution backend failed unexpectedly", {})
        self._settle(w, turn, "".join(parts), usage, failure)
        try:
            await self._commit()
        except WorkerRuntimeError:
            pass  # the store failed: recorded by _commit, the Runtime now refuses commands
        finally:
            turn.done.set()

    async def _read_history(self, w: Worker, turn: Turn) -> None:
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

    def _context(self, w: Worker, turn: Turn) -> Sequence[ContextMessage]:
        """The model context of a turn: the profile's system prompt, then the conversation as
        it stood when the turn started (its own input last). A view, not a copy: the history
        only ever grows by appending."""
        prompt = w.profile.system_prompt
        view = _ContextView(
            ContextMessage("system", prompt) if prompt else None, w.history or [], turn.context_len
        )
        budget = w.profile.context_tokens
        return view if budget is None else fit_context(view, budget, has_prompt=bool(prompt))

    def _settle(
        self,
        w: Worker,
        turn: Turn,
        text: str,
        usage: TurnUsage | None,
        failure: tuple[str, str, dict[str, Any]] | None,
    ) -> None:
        """Record how a turn ended (exactly one terminal event), then start the next queued
        input unless the Worker is stopping or the Runtime is closing."""
        tid = turn.turn_id
        if turn.interrupt_reason is not None:
            w.interrupted += 1
            cursor = self._emit("turn_interrupted", w, tid, {"reason": turn.interrupt_reason})
        elif turn.cancel_reason is not None:
            if text:
                self._commit_message(w, tid, text, partial=True)
            w.cancelled += 1
            cursor = self._emit("turn_cancelled", w, tid, {"reason": turn.cancel_reason})
        elif failure is not None:
            code, message, details = failure
            sequence = w.transcript_len + 1
            w.failed += 1
            error: dict[str, Any] = {"code": code, "message": message}
            if details:
                error["details"] = details  # e.g. retry_after_s of provider_rate_limited
            cursor = self._emit(
                "turn_failed", w, tid, {"error": error, "transcript_sequence": sequence}
            )
            w.transcript_len += 1
        else:
            self._commit_message(w, tid, text, partial=False)
            input_tokens = usage.input_tokens if usage else 0
            output_tokens = usage.output_tokens if usage else 0
            w.completed += 1
            w.input_tokens += input_tokens
            w.output_tokens += output_tokens
            cursor = self._emit(
                "turn_completed",
                w,
                tid,
                {
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                    "duration_ms": round((time.monotonic() - turn.started) * 1000, 3),
                },
            )
        turn.settled_cursor = cursor
        w.active = None
        if w.queue and w.stop_done is None and self._state == "running":
            queued = w.queue.popleft()
            self._start_turn(w, queued.turn_id, queued.transcript_sequence, queued.content)
        elif w.status == "running":
            self._set_status(w, "idle")

    def _stream_text(self, w: Worker, turn: Turn, parts: list[str], text: str) -> None:
        if text:
            parts.append(text)
            self._emit("output_delta", w, turn.turn_id, {"text": text})
            self._publish_flushed()

    def _commit_message(self, w: Worker, turn_id: str, text: str, *, partial: bool) -> None:
        data: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "transcript_sequence": w.transcript_len + 1,
        }
        if partial:
            data["partial"] = True
        self._emit("message_completed", w, turn_id, data)
        w.transcript_len += 1
        if text and w.history is not None:
            w.history.append(ContextMessage("assistant", text))
