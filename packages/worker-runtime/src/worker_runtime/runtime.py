"""The Runtime: the authority over its Workers (contract §1–§4).

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

from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from ._backends import Backends
from ._catalog import Catalog
from ._checks import Checks, check_limit, check_start, parse_request
from ._context import ContextPolicy
from ._journal import Journal
from ._turnrunner import TurnRunner
from ._worker import Worker, fingerprint, idempotency_of
from .errors import RuntimeUnavailable
from .events import Subscription, now_rfc3339
from .execution import ExecutionBackend
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
    require_id,
)
from .profiles import BUILTIN_PROFILES, Profiles
from .store import RuntimeStore, WorkerRecord, transcript_page
from .store.memory import MemoryStore

if TYPE_CHECKING:
    from .api import EventStream, RuntimeAPI

__all__ = ["Runtime"]

_CAPABILITIES = (
    "workers.create",
    "workers.input",
    "workers.stop",
    "workers.cancel",
    "transcript.read",
    "events.stream",
)


class Runtime:
    """The authority over a set of Workers: lifecycle, turns, event log and transcripts.

    It holds its parts and hands each what it needs: the :class:`Catalog` of Workers
    (lookup, counts, paging), the :class:`Journal` (event log, store, fail-stop, diagnostics),
    the :class:`ContextPolicy` (each turn's model context) and the :class:`TurnRunner`
    (accept, start, run, settle). It implements :class:`worker_runtime.api.RuntimeAPI`.
    """

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
        self._limits = limits = limits or Limits()
        self._profiles = profiles or Profiles()
        self._store: RuntimeStore = store if store is not None else MemoryStore()
        self._backends = Backends(backends)
        self._checks = Checks(limits)
        self._catalog = Catalog(self._runtime_id, limits)
        self._journal = Journal(self._runtime_id, limits, self._store, self._catalog)
        self._runner = TurnRunner(
            self._runtime_id,
            limits,
            self._journal,
            ContextPolicy(self._store),
            self._backends,
            lambda: self._state == "running",
        )
        self._stack: AsyncExitStack | None = None
        self._state = "new"  # new → running → stopping → closed
        self._closed = anyio.Event()
        self._started_at = ""

    def _check_accepting(self) -> None:
        self._journal.check()
        if self._state != "running":
            raise RuntimeUnavailable(
                "the Runtime is not accepting commands",
                details={"reason": "shutting_down" if self._state != "new" else "not_started"},
            )

    # -- lifecycle of the Runtime ----------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._state != "new":
            raise RuntimeUnavailable("this Runtime was already started")
        opened = await self._store.open(runtime_id=self._runtime_id, limits=self._limits)
        journal, runner = self._journal, self._runner
        journal.open(opened)
        async with AsyncExitStack() as stack:
            runner.tg = await stack.enter_async_context(anyio.create_task_group())
            self._stack = stack.pop_all()
        self._state = "running"
        self._started_at = now_rfc3339()
        restored = [self._catalog.restore(r) for r in opened.workers]
        interrupted = [w for w in restored if isinstance(w, Worker) and w.turn is not None]
        journal.emit(
            "runtime_started",
            None,
            None,
            {"incarnation": opened.incarnation, "recovered_turns": len(interrupted)},
        )
        for d in [*opened.diagnostics, *(r for r in restored if not isinstance(r, Worker))]:
            journal.diagnose(d.severity, d.code, d.message, d.worker_id)
        runner.recover(interrupted, self._catalog)
        if self._profiles.default_name is None:
            journal.diagnose(
                "info",
                "profile.default_echo",
                "no default profile is configured: the runtime default is the builtin 'echo' "
                "profile, which echoes input back and is not a model",
            )
        await journal.commit()
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
            await self._runner.shutdown(self._catalog.running(), grace)
            await self._journal.commit()
            await self._store.close()
            await self._backends.aclose()
        finally:
            self._state = "closed"
            if self._journal.started:
                self._journal.log.close()
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
        w = self._catalog.find(worker_id) if type(worker_id) is str else None
        if w is not None:  # a known Worker's id is valid: its ref was made once
            return w.ref(self._runtime_id)
        return WorkerRef(runtime_id=self._runtime_id, worker_id=require_id(worker_id, "worker_id"))

    async def summary(self) -> RuntimeSummary:
        """The Runtime's identity, status, limits and counts."""
        self._journal.check()
        log_ = self._journal.log
        capabilities = [*_CAPABILITIES]
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
            counts=RuntimeCounts(workers=len(self._catalog), **self._catalog.counts),
            diagnostics_count=self._journal.diagnostics_total,
            started_at=self._started_at,
            subscribers=log_.subscriber_count,
        )

    async def diagnostics(self, limit: int | None = None) -> list[Diagnostic]:
        """The newest diagnostics, oldest first (at most ``limits.max_diagnostics``)."""
        self._journal.check()
        maximum = self._limits.max_diagnostics
        # Checked after the store's new diagnostics are taken in, as before.
        items = self._journal.diagnostics(maximum)
        return items[-check_limit(limit, maximum, maximum) :]

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
        catalog = self._catalog
        if req.idempotency_key is not None:
            prior = catalog.creates.answer(req.idempotency_key, req)
            if prior is not None:
                return catalog.get(prior).detail(self._runtime_id)
        profile = self._profiles.resolve(req.profile)
        self._backends.for_profile(profile)
        self._checks.create(req, workers=len(catalog))

        log_ = self._journal.log
        created_at = now_rfc3339()
        worker_id = catalog.new_id()
        self._store.add_worker(
            WorkerRecord(
                worker_id=worker_id,
                name=req.name,
                profile=profile.model_dump(mode="json"),
                created_at=created_at,
                ordinal=len(catalog),
                position=log_.next_position,
            )
        )
        w = catalog.add_new(worker_id, req.name, profile, created_at, log_.head_cursor)
        summary = w.summary(self._runtime_id).model_dump(mode="json")
        key = idempotency_of(req)
        if key is None:
            self._journal.emit("worker_created", w, None, {"worker": summary})
        else:
            self._journal.emit("worker_created", w, None, {"worker": summary, "idempotency": key})
        if req.initial_input is not None:
            self._runner.accept(w, req.initial_input)
        if req.idempotency_key is not None:
            catalog.creates.put(req.idempotency_key, fingerprint(req), w.worker_id)
        await self._journal.commit()
        return w.detail(self._runtime_id)

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        """A page of Workers in creation order; ``after`` is the last worker_id of the previous
        page, and ``next_after`` is ``None`` on the last page."""
        self._journal.check()
        return self._catalog.page(status=status, limit=limit, after=after)

    async def get_worker(self, worker: str | WorkerRef, /) -> WorkerDetail:
        """A Worker's detail: summary, overview/usage and profile info."""
        self._journal.check()
        return self._catalog.get(worker).detail(self._runtime_id)

    async def stop_worker(
        self, worker: str | WorkerRef, /, *, reason: str | None = None
    ) -> StopAck:
        """Cancel the running turn, discard queued inputs and make the Worker ``stopped``
        forever. A repeated stop returns the first acknowledgement and emits nothing."""
        w = self._catalog.get(worker)
        while w.status != "stopped" and w.stop_done is not None:
            await w.stop_done.wait()  # another stop is under way; share its outcome
        prior = w.stop_ack(self._runtime_id)
        if prior is not None:
            return prior
        self._check_accepting()
        reason = self._checks.reason(reason) or "stopped"
        done = w.stop_done = anyio.Event()
        try:
            await self._runner.stop(w, reason)
            ack = w.stop_ack(self._runtime_id)
            assert ack is not None
            await self._journal.commit()
        finally:
            if w.status != "stopped":
                w.stop_done = None  # the stop did not happen: a later stop tries again
            done.set()
        return ack

    async def cancel(
        self, worker: str | WorkerRef, /, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        """Abort the turn in flight (its backend call is cancelled, partial text is committed)
        and return the Worker to ``idle``; queued inputs then proceed. With no turn in flight,
        or a ``turn_id`` that is not the one in flight, nothing changes."""
        w = self._catalog.get(worker)
        self._check_accepting()
        reason = self._checks.reason(reason) or "cancelled"
        turn = w.turn
        if turn is not None and turn_id is not None and turn_id != turn.turn_id:
            turn = None
        if turn is not None:
            await self._runner.cancel(turn, reason)
        return CancelAck(
            worker_ref=w.ref(self._runtime_id),
            status=w.status,
            cancelled_turn_id=turn.turn_id if turn is not None else None,
            cursor=(turn and turn.settled_cursor) or self._journal.log.head_cursor,
        )

    # -- interaction -------------------------------------------------------------------------

    async def send_input(
        self, worker: str | WorkerRef, request: InputRequest | Mapping[str, Any], /
    ) -> InputAck:
        """Give a Worker input. ``user`` input starts a turn (or waits in the queue with
        ``on_busy="enqueue"``); ``system`` input becomes context for the next turn."""
        w = self._catalog.get(worker)
        self._check_accepting()
        req = parse_request(InputRequest, request)
        self._checks.content(req, field="content")
        if req.idempotency_key is not None and w.acks is not None:
            prior = w.acks.answer(req.idempotency_key, req)
            if prior is not None:
                return prior
        ack = self._runner.accept(w, req)
        await self._journal.commit()
        return ack

    # -- observation -------------------------------------------------------------------------

    async def read_transcript(
        self, worker: str | WorkerRef, /, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        """A bounded page of the transcript. Its ``cursor`` is the head of the event log when
        the page was read: subscribe from it to continue with no gap."""
        self._journal.check()
        w = self._catalog.get(worker)
        limit = check_limit(limit, 100, self._limits.max_transcript_items)
        start = check_start(start)
        cursor = self._journal.log.head_cursor
        total = w.state.transcript_len
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
        worker: str | WorkerRef | None = None,
    ) -> EventPage:
        """Up to ``limit`` events after ``cursor`` (from the oldest retained without one),
        runtime-wide or for one Worker. ``next_cursor`` continues the read."""
        self._journal.check()
        limit = check_limit(limit, 100, self._limits.max_events_read)
        worker_id = self._catalog.get(worker).worker_id if worker is not None else None
        return await self._journal.read_page(cursor, limit, worker_id)

    def subscribe(
        self, *, cursor: str | None = None, worker: str | WorkerRef | None = None
    ) -> Subscription:
        """An async iterator of events after ``cursor`` (new events only without one),
        runtime-wide or for one Worker. Cursor errors are raised here, before any event; once
        the Runtime has closed its log, ``runtime_unavailable``."""
        self._journal.check()
        self._journal.check_open()
        worker_id = self._catalog.get(worker).worker_id if worker is not None else None
        return self._journal.subscribe(cursor, worker_id)

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> Subscription:
        """:meth:`subscribe` in the words of :class:`~worker_runtime.api.RuntimeAPI`: the
        events after ``cursor``, runtime-wide or for the Worker ``worker_id``."""
        return self.subscribe(cursor=cursor, worker=worker_id)


if TYPE_CHECKING:  # checked by mypy: the Runtime speaks the one Runtime API

    def _implements_runtime_api(runtime: Runtime) -> RuntimeAPI:
        return runtime

    def _is_an_event_stream(subscription: Subscription) -> EventStream:
        return subscription
