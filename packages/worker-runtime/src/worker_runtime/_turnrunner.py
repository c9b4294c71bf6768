"""The turn runner (private): accepting input, starting a turn in its cancel scope, running
it against its execution backend, and settling it with exactly one terminal event."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import AsyncBackend, TaskGroup

from ._context import ContextPolicy
from ._eventdata import ErrorData, InputAcceptedData, MessageCompletedData
from ._journal import Journal
from ._unicode import DeltaText
from ._worker import IdempotencyCache, Turn, Worker, fingerprint, idempotency_of
from .errors import ExecutionError, WorkerBusy, WorkerRuntimeError, WorkerStopped
from .execution import ExecutionBackend, TextDelta, TurnRequest, TurnUsage
from .models import InputAck, InputRequest, Limits

__all__ = ["TurnRunner"]

log = logging.getLogger("worker_runtime")

_Failure = tuple[str, str, dict[str, Any]]

#: Turn tasks kept waiting for another turn once theirs has settled (waking one costs about
#: a third of starting a task), at most this many whatever the number of Workers.
IDLE_TASKS = 16


class _IdleTask:
    """A turn task waiting for its next turn; woken with one, or with none to end."""

    __slots__ = ("next", "wake")

    def __init__(self, wake: anyio.Event) -> None:
        self.wake = wake
        self.next: tuple[Worker, Turn] | None = None


class TurnRunner:
    """Accepts input and runs each Worker's turns, one at a time, in the task group it is
    given. ``accepting`` says whether the Runtime still starts queued inputs."""

    def __init__(
        self,
        runtime_id: str,
        limits: Limits,
        journal: Journal,
        context: ContextPolicy,
        backends: Mapping[str, ExecutionBackend],
        accepting: Callable[[], bool],
    ) -> None:
        self._runtime_id = runtime_id
        self._limits = limits
        self._journal = journal
        self._context = context
        self._backends = backends
        self._accepting = accepting
        self.tg: TaskGroup | None = None  # set by the Runtime when it starts
        self._idle: list[_IdleTask] = []
        self._closing = False
        self._anyio: type[AsyncBackend] | None = None

    def _backend(self) -> type[AsyncBackend]:
        """The running event loop's anyio backend, looked up once: its factories make each
        turn's cancel scope and each idle task's wake without ``anyio.CancelScope()`` and
        ``anyio.Event()`` looking up the running async library every time."""
        backend = self._anyio
        if backend is None:
            backend = self._anyio = anyio.lowlevel.current_token().backend_class
        return backend

    # -- accepting -------------------------------------------------------------------------

    def accept(self, w: Worker, req: InputRequest) -> InputAck:
        """Decide and record an input synchronously (no await), returning its ack."""
        if w.status == "stopped" or w.stop_done is not None:
            raise WorkerStopped("the Worker is stopped", details={"worker_id": w.worker_id})
        sequence = w.state.transcript_len + 1
        data: InputAcceptedData = {
            "input_kind": req.kind,
            "content": req.content,
            "transcript_sequence": sequence,
            "queued": False,
        }
        key = idempotency_of(req)
        if key is not None:
            data["idempotency"] = key
        if req.kind == "system":
            cursor = self._journal.emit("input_accepted", w, None, data)
            self._context.add(w, "system", req.content)
            ack = self._ack(w, None, False, sequence, cursor)
        else:
            turn = w.turn
            if turn is not None:
                if req.on_busy == "reject":
                    raise WorkerBusy(
                        "the Worker is running a turn", details={"active_turn_id": turn.turn_id}
                    )
                if w.queued >= self._limits.max_queued_inputs:
                    raise WorkerBusy(
                        "the Worker's input queue is full",
                        details={
                            "active_turn_id": turn.turn_id,
                            "max_queued_inputs": self._limits.max_queued_inputs,
                        },
                    )
            turn_id = "turn_" + secrets.token_hex(8)
            data["queued"] = queued = turn is not None
            cursor = self._journal.emit("input_accepted", w, turn_id, data)
            if not queued:
                self.start(w, turn_id, sequence, req.content)
            ack = self._ack(w, turn_id, queued, sequence, cursor)
        if req.idempotency_key is not None:
            if w.acks is None:
                w.acks = IdempotencyCache(self._limits.max_idempotency_keys)
            w.acks.put(req.idempotency_key, fingerprint(req), ack)
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

    # -- running ---------------------------------------------------------------------------

    def start(self, w: Worker, turn_id: str, input_sequence: int, content: str) -> None:
        """Start a turn now: its input joins the history and its task starts."""
        context_len = self._context.start(w, content)
        turn = w.turn = Turn(
            turn_id,
            input_sequence,
            time.monotonic(),
            context_len,
            self._backend().create_cancel_scope(),
        )
        self._journal.emit(
            "turn_started",
            w,
            turn_id,
            {"profile": w.profile.name, "model": w.profile.shown_model},
        )
        if self._idle:
            idle = self._idle.pop()
            idle.next = (w, turn)
            idle.wake.set()
        else:
            assert self.tg is not None
            self.tg.start_soon(self._serve, w, turn, name="turn task")

    def start_queued(self, w: Worker) -> bool:
        """Start the Worker's oldest queued input, if any; whether one started."""
        queue = w.state.queue
        if not queue:
            return False
        queued = queue[0]
        self.start(w, queued.turn_id, queued.transcript_sequence, queued.content)
        return True

    async def _serve(self, w: Worker, turn: Turn) -> None:
        """Run a turn, then wait for the next one among the idle turn tasks, if they are not
        enough yet (the task ends otherwise, and when the runner closes)."""
        while True:
            await self._run(w, turn)
            if self._closing or len(self._idle) >= IDLE_TASKS:
                return
            idle = _IdleTask(self._backend().create_event())
            self._idle.append(idle)
            try:
                await idle.wake.wait()
            finally:
                if idle in self._idle:  # cancelled while idle: never hand it a turn
                    self._idle.remove(idle)
            if idle.next is None:
                return
            w, turn = idle.next

    async def _run(self, w: Worker, turn: Turn) -> None:
        parts: list[str] = []
        usage: TurnUsage | None = None
        failure: _Failure | None = None
        try:
            with turn.scope:
                await self._context.read(w, turn)
                request = TurnRequest(
                    worker_ref=w.ref(self._runtime_id),
                    turn_id=turn.turn_id,
                    profile=w.profile,
                    messages=self._context.context(w, turn),
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
        self.settle(w, turn, "".join(parts), usage, failure)
        try:
            await self._journal.commit()
        except WorkerRuntimeError:
            pass  # the store failed: recorded by commit, the Runtime now refuses commands
        finally:
            turn.done.set()

    def _stream_text(self, w: Worker, turn: Turn, parts: list[str], text: str) -> None:
        if text:
            parts.append(text)
            self._journal.emit("output_delta", w, turn.turn_id, {"text": text})
            self._journal.publish_flushed()

    # -- settling --------------------------------------------------------------------------

    def settle(
        self,
        w: Worker,
        turn: Turn,
        text: str,
        usage: TurnUsage | None,
        failure: _Failure | None,
    ) -> None:
        """Record how a turn ended (exactly one terminal event: the Worker's state counts it),
        then start the next queued input unless the Worker is stopping or the Runtime is
        closing."""
        emit, tid = self._journal.emit, turn.turn_id
        if turn.interrupt_reason is not None:
            cursor = emit("turn_interrupted", w, tid, {"reason": turn.interrupt_reason})
        elif turn.cancel_reason is not None:
            if text:
                self._commit_message(w, tid, text, partial=True)
            cursor = emit("turn_cancelled", w, tid, {"reason": turn.cancel_reason})
        elif failure is not None:
            code, message, details = failure
            error: ErrorData = {"code": code, "message": message}
            if details:
                error["details"] = details  # e.g. retry_after_s of provider_rate_limited
            sequence = w.state.transcript_len + 1
            cursor = emit("turn_failed", w, tid, {"error": error, "transcript_sequence": sequence})
        else:
            self._commit_message(w, tid, text, partial=False)
            cursor = emit(
                "turn_completed",
                w,
                tid,
                {
                    "usage": {
                        "input_tokens": usage.input_tokens if usage else 0,
                        "output_tokens": usage.output_tokens if usage else 0,
                    },
                    "duration_ms": round((time.monotonic() - turn.started) * 1000, 3),
                },
            )
        turn.settled_cursor = cursor
        w.turn = None
        if w.stop_done is None and self._accepting():
            self.start_queued(w)

    async def cancel(self, turn: Turn, reason: str) -> None:
        """Cancel a turn in flight (the first reason given is kept) and wait until it settled."""
        if turn.cancel_reason is None:
            turn.cancel_reason = reason
        turn.scope.cancel()
        await turn.done.wait()

    async def stop(self, w: Worker, reason: str) -> None:
        """Cancel the Worker's turn, discard its queued inputs and record it ``stopped``."""
        if w.turn is not None:
            await self.cancel(w.turn, reason)
        for queued in list(w.state.queue):
            self._journal.emit(
                "input_discarded",
                w,
                queued.turn_id,
                {"transcript_sequence": queued.transcript_sequence, "reason": "worker_stopped"},
            )
        self._journal.emit("worker_stopped", w, None, {"reason": reason})

    async def shutdown(self, running: list[Turn], grace: float) -> None:
        """Let running turns finish within ``grace`` seconds, then interrupt the rest
        (``runtime_shutdown``), wait until every one has settled, then :meth:`close`."""
        try:
            with anyio.move_on_after(grace):
                for turn in running:
                    await turn.done.wait()
            for turn in running:
                if not turn.done.is_set():
                    turn.interrupt_reason = "runtime_shutdown"
                    turn.scope.cancel()
            for turn in running:
                await turn.done.wait()
        finally:
            self.close()

    def close(self) -> None:
        """End the idle turn tasks (so the task group can exit); a turn that still settles
        ends its task."""
        self._closing = True
        while self._idle:
            self._idle.pop().wake.set()

    def recover(self, interrupted: Iterable[Worker], workers: Iterable[Worker]) -> None:
        """After a restart: interrupt the turns that were open, then start each idle Worker's
        oldest queued input."""
        for w in interrupted:
            self.interrupt_recovered(w)
        for w in workers:
            if w.status == "idle":
                self.start_queued(w)

    def interrupt_recovered(self, w: Worker) -> None:
        """Settle a turn that was open when the previous process died."""
        turn = w.turn
        if turn is None:
            return
        turn.settled_cursor = self._journal.emit(
            "turn_interrupted", w, turn.turn_id, {"reason": "runtime_restart"}
        )
        w.turn = None
        turn.done.set()

    def _commit_message(self, w: Worker, turn_id: str, text: str, *, partial: bool) -> None:
        data: MessageCompletedData = {
            "role": "assistant",
            "content": text,
            "transcript_sequence": w.state.transcript_len + 1,
        }
        if partial:
            data["partial"] = True
        self._journal.emit("message_completed", w, turn_id, data)
        if text:
            self._context.add(w, "assistant", text)
