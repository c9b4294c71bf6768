"""The Runtime: the authority over its Workers (SPEC §1–§4).

A Runtime is used as an async context manager, which owns the task group its turns run in::

    async with Runtime(runtime_id="local") as runtime:
        worker = await runtime.create_worker({"name": "demo"})
        ack = await runtime.send_input(worker.worker_ref, {"content": "hello"})
        async with runtime.subscribe(cursor=ack.cursor, worker=worker.worker_ref) as events:
            async for event in events:
                ...

Its public API has four groups: management (:meth:`summary`, :meth:`diagnostics`,
:meth:`close`), catalog and lifecycle (:meth:`create_worker`, :meth:`list_workers`,
:meth:`get_worker`, :meth:`stop_worker`, :meth:`cancel`), interaction (:meth:`send_input`) and
observation (:meth:`read_transcript`, :meth:`read_events`, :meth:`subscribe`).

Every command decides and mutates state without awaiting in between, so concurrent commands on
one Worker are serialized by construction; it then awaits the store's sync before it answers.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, ValidationError

from ._engine import check_limit, parse_request
from ._turns import Turns
from ._worker import IdempotencyCache, QueuedInput, Turn, Worker, fingerprint, key_data
from .errors import (
    IdempotencyConflict,
    InvalidInput,
    LimitExceeded,
    RuntimeUnavailable,
    UnsupportedOperation,
)
from .events import EventLog, Subscription, now_rfc3339
from .execution import ExecutionBackend
from .execution.echo import EchoBackend
from .models import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    EventPage,
    InputAck,
    InputRequest,
    Limits,
    ProfileEntry,
    RuntimeCounts,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerPage,
    WorkerRef,
    WorkerSummary,
    require_id,
)
from .profiles import BUILTIN_PROFILES, Profile, Profiles
from .store import RecoveredWorker, RuntimeStore, WorkerRecord, transcript_page
from .store.memory import MemoryStore

__all__ = ["Runtime"]

log = logging.getLogger("worker_runtime")

M = TypeVar("M", bound=BaseModel)

_STATUSES = ("idle", "running", "stopped")


def _openai_backend() -> ExecutionBackend:
    from .execution.openai import OpenAIBackend

    return OpenAIBackend()


def _anthropic_backend() -> ExecutionBackend:
    from .execution.anthropic import AnthropicBackend

    return AnthropicBackend()


def _llama_cpp_backend() -> ExecutionBackend:
    from .execution.llama_cpp import LlamaCppBackend

    return LlamaCppBackend()


#: The provider backends a Runtime makes on first use, each from its extra.
_PROVIDER_BACKENDS = {
    "openai": _openai_backend,
    "anthropic": _anthropic_backend,
    "llama_cpp": _llama_cpp_backend,
}
#: Events kept in memory per Worker when the store is durable (older ones are read from disk).
DURABLE_WORKER_CACHE = 256


class Runtime(Turns):
    """The authority over a set of Workers: lifecycle, turns, event log and transcripts."""

    def __init__(
        self,
        *,
        runtime_id: str = "local",
        display_name: str | None = None,
        limits: Limits | None = None,
        profiles: Profiles | None = None,
        store: RuntimeStore | None = None,
        backends: Mapping[str, ExecutionBackend] | None = None,
    ) -> None:
        self._runtime_id = require_id(runtime_id, "runtime_id")
        self._display_name = display_name or runtime_id
        self._limits = limits or Limits()
        self._profiles = profiles or Profiles()
        self._store: RuntimeStore = store if store is not None else MemoryStore()
        self._backends: dict[str, ExecutionBackend] = {"echo": EchoBackend()}
        self._backends.update(backends or {})
        self._workers: dict[str, Worker] = {}
        self._order: list[Worker] = []
        self._counts = dict.fromkeys(_STATUSES, 0)
        self._creates: IdempotencyCache[str] = IdempotencyCache(self._limits.max_idempotency_keys)
        self._diagnostics: deque[Diagnostic] = deque(maxlen=self._limits.max_diagnostics)
        self._diagnostics_total = 0
        self._log: EventLog | None = None
        self._tg: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._state = "new"  # new → running → stopping → closed
        self._closed = anyio.Event()
        self._started_at = ""
        self._store_error: RuntimeUnavailable | None = None
        self._pending_diagnostics: list[tuple[Any, str, str, str | None]] = []

    def _backend_for(self, profile: Profile) -> ExecutionBackend:
        """The execution backend of a profile's provider, made on first use from its extra
        (``MissingExtraError`` names the ``pip install`` when it is not installed)."""
        backend = self._backends.get(profile.provider)
        if backend is None:
            factory = _PROVIDER_BACKENDS.get(profile.provider)
            if factory is None:
                raise UnsupportedOperation(
                    f"provider '{profile.provider}' is not available in this Runtime",
                    details={"provider": profile.provider, "profile": profile.name},
                )
            backend = self._backends[profile.provider] = factory()
        return backend

    # -- lifecycle of the Runtime ----------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._state != "new":
            raise RuntimeUnavailable("this Runtime was already started")
        opened = await self._store.open(runtime_id=self._runtime_id, limits=self._limits)
        self._restored_profiles: dict[str, Profile] = {}
        self._log = EventLog(
            runtime_id=self._runtime_id,
            incarnation=opened.incarnation,
            window=self._limits.runtime_event_window,
            window_bytes=self._limits.runtime_event_window_bytes,
            # With a durable store the rings are only a cache in front of the disk.
            worker_backlog=(
                min(self._limits.event_backlog, DURABLE_WORKER_CACHE)
                if self._store.durable
                else self._limits.event_backlog
            ),
            head=opened.head,
            archive=self._store if self._store.durable else None,
        )
        async with AsyncExitStack() as stack:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._stack = stack.pop_all()
        self._state = "running"
        self._started_at = now_rfc3339()
        open_turns = [self._restore(r) for r in opened.workers]
        interrupted = [w for w in open_turns if w is not None]
        self._emit(
            "runtime_started",
            None,
            None,
            {
                "incarnation": opened.incarnation,
                "recovered_turns": len(interrupted),
            },
        )
        for d in opened.diagnostics:
            self._diagnose(d.severity, d.code, d.message, d.worker_id)
        for severity, code, message, worker_id in self._pending_diagnostics:
            self._diagnose(severity, code, message, worker_id)
        self._pending_diagnostics.clear()
        for w in interrupted:
            self._interrupt_recovered(w)
        for w in self._order:
            if w.status == "idle" and w.queue:
                queued = w.queue.popleft()
                self._start_turn(w, queued.turn_id, queued.transcript_sequence, queued.content)
        if self._profiles.default_name is None:
            self._diagnose(
                "info",
                "profile.default_echo",
                "no default profile is configured: the runtime default is the builtin 'echo' "
                "profile, which echoes input back and is not a model",
            )
        await self._commit()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cancelled = exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class())
        try:
            with anyio.CancelScope(shield=True):
                await self.close(grace_s=0 if cancelled else None)
        finally:
            stack, self._stack = self._stack, None
            if stack is not None:
                # Every turn has settled in close(), so the task group has nothing left to
                # wait for; the caller's own exception propagates unwrapped.
                await stack.__aexit__(None, None, None)

    def _restore(self, recovered: RecoveredWorker) -> Worker | None:
        """Rebuild a Worker from the store; returns it when it had a turn open at the crash."""
        record, state = recovered.record, recovered.state
        try:
            # Most Workers share a few profiles: validate each distinct one once.
            key = json.dumps(record.profile, sort_keys=True, default=str)
            profile = self._restored_profiles.get(key)
            if profile is None:
                profile = self._restored_profiles[key] = Profile.model_validate(record.profile)
        except (ValidationError, TypeError):
            self._pending_diagnostics.append(
                (
                    "warning",
                    "worker_snapshot_ignored",
                    "a Worker's profile record is invalid; the Worker was skipped",
                    record.worker_id,
                )
            )
            return None
        w = Worker(
            record.worker_id,
            record.name,
            profile,
            len(self._order),
            record.created_at,
            state.last_cursor,
        )
        w.history = None
        w.transcript_len = state.transcript_len
        w.turns_total = state.turns_total
        w.completed, w.failed = state.completed, state.failed
        w.cancelled, w.interrupted = state.cancelled, state.interrupted
        w.input_tokens, w.output_tokens = state.input_tokens, state.output_tokens
        w.last_activity_at = state.last_activity_at or record.created_at
        if state.create_key is not None:
            self._creates.put(state.create_key[0], state.create_key[1], w.worker_id)
        if state.input_keys:
            w.idempotency = IdempotencyCache(self._limits.max_idempotency_keys)
            for key, body, turn_id, queued, sequence, cursor in state.input_keys:
                ack = InputAck(
                    worker_ref=w.ref(self._runtime_id),
                    turn_id=turn_id,
                    queued=queued,
                    transcript_sequence=sequence,
                    cursor=cursor,
                    status=state.status,
                )
                w.idempotency.put(key, body, ack)
        if state.queue:
            w.queue = deque(
                QueuedInput(q.turn_id, q.transcript_sequence, q.content) for q in state.queue
            )
        self._workers[w.worker_id] = w
        self._order.append(w)
        self._counts["idle"] += 1
        if state.status == "stopped":
            self._set_status(w, "stopped")
            w.stop_ack = StopAck(
                worker_ref=w.ref(self._runtime_id),
                status="stopped",
                cursor=state.stop_cursor or state.last_cursor,
            )
            return None
        if state.active_turn_id is not None:
            w.active = Turn(state.active_turn_id, state.active_input_sequence, 0.0, 0)
            return w
        return None

    def _interrupt_recovered(self, w: Worker) -> None:
        """Settle a turn that was open when the previous process died."""
        turn = w.active
        if turn is None:
            return
        w.interrupted += 1
        turn.settled_cursor = self._emit(
            "turn_interrupted", w, turn.turn_id, {"reason": "runtime_restart"}
        )
        w.active = None
        turn.done.set()

    async def close(self, *, grace_s: float | None = None) -> None:
        """Stop accepting commands, let running turns finish within the grace period
        (default ``limits.shutdown_grace_s``), interrupt the rest, flush the store and end
        every subscription with a ``runtime_shutdown`` notice. Idempotent."""
        if self._state in ("stopping", "closed"):
            await self._closed.wait()
            return
        if self._state == "new":
            self._state = "closed"
            self._closed.set()
            return
        self._state = "stopping"
        grace = self._limits.shutdown_grace_s if grace_s is None else grace_s
        try:
            running = [w.active for w in self._order if w.active is not None]
            with anyio.move_on_after(grace):
                for turn in running:
                    await turn.done.wait()
            for turn in running:
                if not turn.done.is_set():
                    turn.interrupt_reason = "runtime_shutdown"
                    turn.scope.cancel()
            for turn in running:
                await turn.done.wait()
            await self._commit()
            await self._store.close()
            for backend in self._backends.values():  # provider clients and their pools
                aclose = getattr(backend, "aclose", None)
                if aclose is not None:
                    await aclose()
        finally:
            self._state = "closed"
            if self._log is not None:
                self._log.close()
            self._closed.set()

    # -- management --------------------------------------------------------------------------

    @property
    def runtime_id(self) -> str:
        return self._runtime_id

    @property
    def limits(self) -> Limits:
        return self._limits

    def ref(self, worker_id: str) -> WorkerRef:
        """A WorkerRef of this Runtime; ``invalid_input`` if ``worker_id`` is not an id."""
        return WorkerRef(runtime_id=self._runtime_id, worker_id=require_id(worker_id, "worker_id"))

    async def summary(self) -> RuntimeSummary:
        """The Runtime's identity, status, limits and counts."""
        self._check_store()
        log_ = self._require_log()
        capabilities = [
            "workers.create",
            "workers.input",
            "workers.stop",
            "workers.cancel",
            "transcript.read",
            "events.stream",
        ]
        if self._store.durable:
            capabilities.append("store.durable")
        return RuntimeSummary(
            runtime_id=self._runtime_id,
            display_name=self._display_name,
            status="running" if self._state == "running" else "stopping",
            store=self._store.kind,
            incarnation=log_.incarnation,
            capabilities=capabilities,
            limits=self._limits,
            counts=RuntimeCounts(workers=len(self._order), **self._counts),
            diagnostics_count=self._diagnostics_total,
            started_at=self._started_at,
            subscribers=log_.subscriber_count,
        )

    async def diagnostics(self, limit: int | None = None) -> list[Diagnostic]:
        """The newest diagnostics, oldest first (at most ``limits.max_diagnostics``)."""
        self._check_store()
        self._drain_store_diagnostics()
        limit = check_limit(limit, self._limits.max_diagnostics, self._limits.max_diagnostics)
        items = list(self._diagnostics)
        return items[-limit:]

    async def list_profiles(self) -> list[ProfileEntry]:
        """The profiles a Worker may be created on: the builtin ones, then the named ones,
        each with whether it is the runtime default. Never a credential."""
        default = self._profiles.default_name
        entries = [
            ProfileEntry(
                **p.info.model_dump(), kind="builtin", is_default=default is None and name == "echo"
            )
            for name, p in BUILTIN_PROFILES.items()
        ]
        entries.extend(
            ProfileEntry(**p.info.model_dump(), kind="named", is_default=name == default)
            for name, p in self._profiles.named.items()
        )
        return entries

    # -- catalog and lifecycle ---------------------------------------------------------------

    async def create_worker(
        self, request: CreateWorkerRequest | Mapping[str, Any] | None = None
    ) -> WorkerDetail:
        """Create a Worker (and accept its ``initial_input`` in the same step)."""
        self._check_accepting()
        req = parse_request(CreateWorkerRequest, request)
        key_print = fingerprint(req) if req.idempotency_key is not None else ""
        if req.idempotency_key is not None:
            prior = self._creates.get(req.idempotency_key)
            if prior is not None:
                if prior[0] != key_print:
                    raise IdempotencyConflict(
                        "this idempotency key was used with another body",
                        details={"idempotency_key": req.idempotency_key},
                    )
                return self._workers[prior[1]].detail(self._runtime_id)
        profile = self._profiles.resolve(req.profile)
        self._backend_for(profile)
        if req.name is not None and len(req.name) > self._limits.max_name_chars:
            raise InvalidInput(
                f"name: at most {self._limits.max_name_chars} characters",
                details={"field": "name"},
            )
        if req.initial_input is not None:
            self._check_content(req.initial_input, field="initial_input.content")
        if len(self._workers) >= self._limits.max_workers:
            raise LimitExceeded(
                f"this Runtime holds its maximum of {self._limits.max_workers} Workers",
                details={"limit": "max_workers", "value": self._limits.max_workers},
            )

        log_ = self._require_log()
        worker_id = self._new_worker_id()
        created_at = now_rfc3339()
        self._store.add_worker(
            WorkerRecord(
                worker_id=worker_id,
                name=req.name,
                profile=profile.model_dump(mode="json"),
                created_at=created_at,
                ordinal=len(self._order),
                position=log_.next_position,
            )
        )
        w = Worker(worker_id, req.name, profile, len(self._order), created_at, log_.head_cursor)
        self._workers[worker_id] = w
        self._order.append(w)
        self._counts["idle"] += 1
        self._emit("worker_created", w, None, {"worker": self._summary_json(w), **key_data(req)})
        if req.initial_input is not None:
            self._accept_input(w, req.initial_input)
        if req.idempotency_key is not None:
            self._creates.put(req.idempotency_key, key_print, worker_id)
        await self._commit()
        return w.detail(self._runtime_id)

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        """A page of Workers in creation order; ``after`` is the last worker_id of the previous
        page, and ``next_after`` is ``None`` on the last page."""
        self._check_store()
        limit = check_limit(limit, 100, self._limits.max_list_workers)
        if status is not None and status not in _STATUSES:
            raise InvalidInput(
                "status must be one of idle, running, stopped", details={"field": "status"}
            )
        start = 0
        if after is not None:
            prior = self._workers.get(after) if isinstance(after, str) else None
            if prior is None:
                raise InvalidInput(
                    "after must be the worker_id of a Worker of this Runtime",
                    details={"field": "after"},
                )
            start = prior.ordinal + 1
        page: list[WorkerSummary] = []
        next_after: str | None = None
        for w in self._order[start:] if start else self._order:
            if status is not None and w.status != status:
                continue
            if len(page) == limit:
                next_after = page[-1].worker_id
                break
            page.append(w.summary(self._runtime_id))
        return WorkerPage(workers=page, next_after=next_after)

    async def get_worker(self, ref: WorkerRef) -> WorkerDetail:
        """A Worker's detail: summary, overview/usage and profile info."""
        self._check_store()
        return self._worker(ref).detail(self._runtime_id)

    async def stop_worker(self, ref: WorkerRef, *, reason: str | None = None) -> StopAck:
        """Cancel the running turn, discard queued inputs and make the Worker ``stopped``
        forever. A repeated stop returns the first acknowledgement and emits nothing."""
        w = self._worker(ref)
        while w.stop_ack is None and w.stop_done is not None:
            await w.stop_done.wait()  # another stop is under way; share its outcome
        if w.stop_ack is not None:
            return w.stop_ack
        self._check_accepting()
        reason = self._check_reason(reason) or "stopped"
        done = w.stop_done = anyio.Event()
        try:
            turn = w.active
            if turn is not None:
                if turn.cancel_reason is None:
                    turn.cancel_reason = reason
                turn.scope.cancel()
                await turn.done.wait()
            while w.queue:
                queued = w.queue.popleft()
                self._emit(
                    "input_discarded",
                    w,
                    queued.turn_id,
                    {
                        "transcript_sequence": queued.transcript_sequence,
                        "reason": "worker_stopped",
                    },
                )
            self._set_status(w, "stopped")
            cursor = self._emit("worker_stopped", w, None, {"reason": reason})
            ack = w.stop_ack = StopAck(
                worker_ref=w.ref(self._runtime_id), status="stopped", cursor=cursor
            )
            await self._commit()
        finally:
            if w.stop_ack is None:
                w.stop_done = None  # the stop did not happen: a later stop tries again
            done.set()
        return ack

    async def cancel(
        self, ref: WorkerRef, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        """Abort the turn in flight (its backend call is cancelled, partial text is committed)
        and return the Worker to ``idle``; queued inputs then proceed. With no turn in flight,
        or a ``turn_id`` that is not the one in flight, nothing changes."""
        w = self._worker(ref)
        self._check_accepting()
        reason = self._check_reason(reason) or "cancelled"
        turn = w.active
        if turn is None or (turn_id is not None and turn_id != turn.turn_id):
            return CancelAck(
                worker_ref=w.ref(self._runtime_id),
                status=w.status,
                cancelled_turn_id=None,
                cursor=self._require_log().head_cursor,
            )
        if turn.cancel_reason is None:
            turn.cancel_reason = reason
        turn.scope.cancel()
        await turn.done.wait()
        return CancelAck(
            worker_ref=w.ref(self._runtime_id),
            status=w.status,
            cancelled_turn_id=turn.turn_id,
            cursor=turn.settled_cursor or self._require_log().head_cursor,
        )

    # -- interaction -------------------------------------------------------------------------

    async def send_input(
        self, ref: WorkerRef, request: InputRequest | Mapping[str, Any]
    ) -> InputAck:
        """Give a Worker input. ``user`` input starts a turn (or waits in the queue with
        ``on_busy="enqueue"``); ``system`` input becomes context for the next turn."""
        w = self._worker(ref)
        self._check_accepting()
        req = parse_request(InputRequest, request)
        self._check_content(req, field="content")
        key = req.idempotency_key
        if key is not None and w.idempotency is not None:
            prior = w.idempotency.get(key)
            if prior is not None:
                if prior[0] != fingerprint(req):
                    raise IdempotencyConflict(
                        "this idempotency key was used with another body",
                        details={"idempotency_key": key},
                    )
                return prior[1]
        ack = self._accept_input(w, req)
        await self._commit()
        return ack

    # -- observation -------------------------------------------------------------------------

    async def read_transcript(
        self, ref: WorkerRef, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        """A bounded page of the transcript. Its ``cursor`` is the head of the event log when
        the page was read: subscribe from it to continue with no gap."""
        self._check_store()
        w = self._worker(ref)
        limit = check_limit(limit, 100, self._limits.max_transcript_items)
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise InvalidInput("start must be an integer >= 0", details={"field": "start"})
        cursor = self._require_log().head_cursor
        total = w.transcript_len
        entries = (
            await self._store.read_transcript(w.worker_id, start, limit) if start < total else ()
        )
        return transcript_page(
            w.ref(self._runtime_id), entries, start=start, limit=limit, total=total, cursor=cursor
        )

    async def read_events(
        self,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        worker: WorkerRef | None = None,
    ) -> EventPage:
        """Up to ``limit`` events after ``cursor`` (from the oldest retained without one),
        runtime-wide or for one Worker. ``next_cursor`` continues the read."""
        self._check_store()
        log_ = self._require_log()
        limit = check_limit(limit, 100, self._limits.max_events_read)
        worker_id = self._worker(worker).worker_id if worker is not None else None
        if cursor is None:
            position = max(0, log_.oldest_retained(worker_id) - 1)
        else:
            position = log_.position_of(cursor)
        events = await log_.read_page(position, limit, worker_id)
        next_cursor = events[-1].cursor if events else log_.cursor_at(position)
        return EventPage(events=[e.to_dict() for e in events], next_cursor=next_cursor or "")

    def subscribe(
        self, *, cursor: str | None = None, worker: WorkerRef | None = None
    ) -> Subscription:
        """An async iterator of events after ``cursor`` (new events only without one),
        runtime-wide or for one Worker. Cursor errors are raised here, before any event; once
        the Runtime has closed its log, ``runtime_unavailable``."""
        self._check_store()
        log_ = self._require_log()
        if log_.closed:
            raise RuntimeUnavailable(
                "the Runtime has shut down", details={"reason": "shutting_down"}
            )
        worker_id = self._worker(worker).worker_id if worker is not None else None
        if cursor is None:
            position = log_.head
        else:
            position = log_.position_of(cursor)
            log_.check_resumable(position, worker_id)
        return log_.subscribe(position, worker_id)
