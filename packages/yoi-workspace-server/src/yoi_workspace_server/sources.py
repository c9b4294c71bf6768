"""Runtime sources: what the registry routes to (SPEC §10).

- :class:`EmbeddedSource` holds an in-process :class:`~worker_runtime.Runtime` and calls it
  directly: no HTTP, no token, no socket.
- :class:`RemoteSource` reaches a ``yoi-runtime`` process through
  :class:`~worker_runtime.client.RuntimeClient`; its URL and token stay server-side. A health
  poll with backoff keeps its status current.
- :class:`LocalSource` is a read-only projection of an fs-store root on this machine
  (:class:`~worker_runtime.store.fsread.FsStoreReader`): list, detail and transcript; every
  command is ``unsupported_operation``.

Each source answers the same operations with the library's models and raises the library's
typed errors, so the Backend passes Runtime error codes through 1:1.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import anyio
from pydantic import BaseModel

from worker_runtime import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    Event,
    InputAck,
    InputRequest,
    ProfileEntry,
    Runtime,
    RuntimeUnavailable,
    StopAck,
    StoreCorrupt,
    Subscription,
    TranscriptPage,
    Unauthorized,
    UnsupportedOperation,
    WorkerDetail,
    WorkerPage,
    WorkerRef,
    WorkerRuntimeError,
    WorkerSummary,
)
from worker_runtime.client import RuntimeClient
from worker_runtime.events import notice, now_rfc3339
from worker_runtime.models import RuntimeCounts
from worker_runtime.store.fsread import FsStoreReader

from ._transport import AiohttpTransport, ReplyLimits

__all__ = [
    "Capabilities",
    "EmbeddedSource",
    "LocalSource",
    "RemoteSource",
    "RuntimeInfo",
    "Source",
    "SourceDiagnostic",
]

log = logging.getLogger("yoi_workspace_server.sources")

T = TypeVar("T")

SourceKind = Literal["embedded", "remote", "local_compatibility"]
SourceStatus = Literal["running", "stopped", "unavailable"]


class Capabilities(BaseModel):
    can_create: bool
    can_input: bool
    can_stop: bool
    can_cancel: bool
    can_read_transcript: bool
    can_stream_events: bool


ALL_CAPABILITIES = Capabilities(
    can_create=True,
    can_input=True,
    can_stop=True,
    can_cancel=True,
    can_read_transcript=True,
    can_stream_events=True,
)


class SourceDiagnostic(BaseModel):
    """A diagnostic of a source. ``code`` is prefixed by the source's kind (``embedded.``,
    ``remote.``, ``local.``) so that diagnostics of different sources never look alike."""

    severity: Literal["info", "warning", "error"]
    code: str
    message: str
    at: str


class RuntimeInfo(BaseModel):
    """What every source reports (SPEC §10), with its summary: the Worker counts (as of the
    last successful health check for a remote; ``None`` before one)."""

    runtime_id: str
    display_name: str
    kind: SourceKind
    implementation: str
    status: SourceStatus
    capabilities: Capabilities
    diagnostics: list[SourceDiagnostic]
    counts: RuntimeCounts | None


class Source(Protocol):
    """One Runtime as the registry sees it."""

    runtime_id: str
    display_name: str
    kind: SourceKind

    async def info(self) -> RuntimeInfo: ...

    async def list_workers(
        self, *, status: str | None, limit: int | None, after: str | None
    ) -> WorkerPage: ...

    async def create_worker(self, request: CreateWorkerRequest) -> WorkerDetail: ...

    async def get_worker(self, worker_id: str) -> WorkerDetail: ...

    async def send_input(self, worker_id: str, request: InputRequest) -> InputAck: ...

    async def stop_worker(self, worker_id: str, reason: str | None) -> StopAck: ...

    async def cancel(
        self, worker_id: str, turn_id: str | None, reason: str | None
    ) -> CancelAck: ...

    async def read_transcript(
        self, worker_id: str, start: int, limit: int | None
    ) -> TranscriptPage: ...

    async def list_profiles(self) -> list[ProfileEntry]: ...

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        """The Runtime's own newest diagnostics, oldest first (each with its ``worker_id``,
        or ``None`` for the runtime's)."""
        ...

    async def open_events(
        self, worker_id: str | None, cursor: str | None
    ) -> AsyncGenerator[Event, None]:
        """A Worker's events (every Worker's with ``worker_id`` ``None``) after ``cursor`` (a
        cursor of this Runtime). What can be checked before the stream starts raises here; a
        remote source keeps the iterator alive across the Runtime's outages, yielding a
        ``runtime_unavailable`` notice when it is lost."""
        ...

    async def aclose(self) -> None: ...


async def _iterate(subscription: Subscription) -> AsyncGenerator[Event, None]:
    async with subscription:
        async for event in subscription:
            yield event


def _auth_failed() -> RuntimeUnavailable:
    return RuntimeUnavailable(
        "the runtime refused the Backend's token", details={"reason": "auth_failed"}
    )


class EmbeddedSource:
    """The Backend's own in-process Runtime, called directly."""

    kind: SourceKind = "embedded"

    def __init__(self, runtime: Runtime, display_name: str) -> None:
        self.runtime = runtime
        self.runtime_id = runtime.runtime_id
        self.display_name = display_name

    async def info(self) -> RuntimeInfo:
        summary = await self.runtime.summary()
        diagnostics = [
            SourceDiagnostic(
                severity=d.severity, code=f"embedded.{d.code}", message=d.message, at=d.at
            )
            for d in await self.runtime.diagnostics(20)
        ]
        return RuntimeInfo(
            runtime_id=self.runtime_id,
            display_name=self.display_name,
            kind="embedded",
            implementation=f"worker_runtime.Runtime ({summary.store} store)",
            status="running" if summary.status == "running" else "stopped",
            capabilities=ALL_CAPABILITIES,
            diagnostics=diagnostics,
            counts=summary.counts,
        )

    async def list_workers(
        self, *, status: str | None, limit: int | None, after: str | None
    ) -> WorkerPage:
        return await self.runtime.list_workers(status=status, limit=limit, after=after)

    async def create_worker(self, request: CreateWorkerRequest) -> WorkerDetail:
        return await self.runtime.create_worker(request)

    async def get_worker(self, worker_id: str) -> WorkerDetail:
        return await self.runtime.get_worker(self.runtime.ref(worker_id))

    async def send_input(self, worker_id: str, request: InputRequest) -> InputAck:
        return await self.runtime.send_input(self.runtime.ref(worker_id), request)

    async def stop_worker(self, worker_id: str, reason: str | None) -> StopAck:
        return await self.runtime.stop_worker(self.runtime.ref(worker_id), reason=reason)

    async def cancel(self, worker_id: str, turn_id: str | None, reason: str | None) -> CancelAck:
        ref = self.runtime.ref(worker_id)
        return await self.runtime.cancel(ref, turn_id=turn_id, reason=reason)

    async def read_transcript(
        self, worker_id: str, start: int, limit: int | None
    ) -> TranscriptPage:
        ref = self.runtime.ref(worker_id)
        return await self.runtime.read_transcript(ref, start=start, limit=limit)

    async def list_profiles(self) -> list[ProfileEntry]:
        return await self.runtime.list_profiles()

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        return await self.runtime.diagnostics(limit)

    async def open_events(
        self, worker_id: str | None, cursor: str | None
    ) -> AsyncGenerator[Event, None]:
        worker = self.runtime.ref(worker_id) if worker_id is not None else None
        return _iterate(self.runtime.subscribe(cursor=cursor, worker=worker))

    async def aclose(self) -> None:
        return None


@dataclass
class _Health:
    status: SourceStatus = "unavailable"
    reason: str = "unreachable"
    checked_at: str = ""
    failures: int = 0
    diagnostics: list[SourceDiagnostic] = field(default_factory=list)
    counts: RuntimeCounts | None = None


class RemoteSource:
    """A ``yoi-runtime`` process. Its base URL and token never leave this object: its repr,
    its errors and its diagnostics carry neither."""

    kind: SourceKind = "remote"

    def __init__(
        self,
        runtime_id: str,
        display_name: str,
        base_url: str,
        token: str,
        *,
        limits: ReplyLimits | None = None,
        max_command_connections: int = 32,
        max_streams: int = 256,
        poll_s: float = 2.0,
        on_status: Any = None,
        last_known: tuple[str, str] | None = None,
    ) -> None:
        self.runtime_id = runtime_id
        self.display_name = display_name
        limits = limits or ReplyLimits()
        self.limits = limits
        # Two clients, two connection pools: commands never wait behind open streams.
        self._client = RuntimeClient(
            base_url,
            token=token,
            timeout_s=limits.deadline_s,
            transport=AiohttpTransport(max_connections=max_command_connections, limits=limits),
        )
        self._stream_client = RuntimeClient(
            base_url,
            token=token,
            timeout_s=limits.deadline_s,
            transport=AiohttpTransport(max_connections=max_streams, limits=limits, stream=True),
        )
        self.max_streams = max_streams
        self.open_streams = 0
        self._poll_s = poll_s
        self._health = _Health()
        if last_known is not None and last_known[0] in ("running", "stopped", "unavailable"):
            self._health.status = cast(SourceStatus, last_known[0])
            self._health.reason = last_known[1]
        self._on_status = on_status
        self._streams: set[anyio.CancelScope] = set()
        self._end_message = "the Backend is shutting down"

    def __repr__(self) -> str:
        return f"RemoteSource(runtime_id={self.runtime_id!r})"

    @property
    def status(self) -> SourceStatus:
        return self._health.status

    # -- health ------------------------------------------------------------------------------

    async def check(self) -> None:
        """Ask the remote for its summary once and record what that says. Never raises:
        whatever the remote answers is a status of this source only."""
        try:
            summary = await self._client.summary()
        except Unauthorized:
            self._set("unavailable", "auth_failed")
        except RuntimeUnavailable as exc:
            self._set("unavailable", _reason_of(exc))
        except WorkerRuntimeError:
            self._set("unavailable", "bad_reply")  # an error envelope to a plain GET
        except Exception:  # a bug of ours, on a remote's reply: this source only
            log.exception("health check of runtime %s failed", self.runtime_id)
            self._set("unavailable", "bad_reply")
        else:
            if summary.runtime_id != self.runtime_id:
                self._set("unavailable", "runtime_id_mismatch")
            else:
                self._health.counts = summary.counts
                self._set("running" if summary.status == "running" else "stopped", "")

    def _set(self, status: SourceStatus, reason: str) -> None:
        health = self._health
        changed = (health.status, health.reason) != (status, reason)
        health.status, health.reason, health.checked_at = status, reason, now_rfc3339()
        health.failures = health.failures + 1 if status == "unavailable" else 0
        if changed:
            if status == "unavailable":
                health.diagnostics = [
                    SourceDiagnostic(
                        severity="error",
                        code=f"remote.{reason}",
                        message=f"the runtime is unavailable ({reason})",
                        at=health.checked_at,
                    )
                ]
            else:
                health.diagnostics = []
            log.info("runtime %s is %s %s", self.runtime_id, status, reason)
            if self._on_status is not None:
                self._on_status(self.runtime_id, status, reason)

    async def poll(self) -> None:
        """Check forever: every ``poll_s / 2`` while healthy (so a failure shows within
        ``poll_s``), backing off to ``2 * poll_s`` while not (so a remote that comes back is
        seen within a few seconds)."""
        while True:
            try:
                await self.check()
            except Exception:  # e.g. the control plane could not record the status
                log.exception("health poll of runtime %s failed", self.runtime_id)
                self._health.failures += 1
            failures = self._health.failures
            await anyio.sleep(self._poll_s * min(4, 2 ** max(0, failures - 1)) / 2)

    @property
    def reason(self) -> str:
        """Why the source is unavailable (``""`` when it is not)."""
        return self._health.reason

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One command. A remote that answered as another runtime_id gets none: the pair
        runtime_id + worker_id is the authority."""
        if self._health.reason == "runtime_id_mismatch":
            raise RuntimeUnavailable(
                "the runtime at that address reports another runtime_id",
                details={"reason": "runtime_id_mismatch"},
            )
        try:
            return self._stamped(await call())
        except Unauthorized:
            raise _auth_failed() from None
        except RuntimeUnavailable:
            raise
        except WorkerRuntimeError as exc:
            if type(exc) is WorkerRuntimeError:  # a code the Backend does not know
                raise RuntimeUnavailable(
                    "the runtime answered with an error the Backend does not know",
                    details={"reason": "bad_reply"},
                ) from None
            if len(exc.message) > 1000:
                exc.message = exc.message[:1000]
            raise

    def _stamped(self, value: T) -> T:
        """``value`` with this source's runtime_id wherever the remote's reply names one: a
        remote speaks for itself only, so a row it labels as another runtime's still routes
        here."""
        if isinstance(value, WorkerPage):
            workers = [self._stamped(w) for w in value.workers]
            return cast(T, value.model_copy(update={"workers": workers}))
        model: Any = value
        if not isinstance(model, BaseModel):
            return value
        update: dict[str, Any] = {}
        ref = getattr(model, "worker_ref", None)
        if isinstance(ref, WorkerRef) and ref.runtime_id != self.runtime_id:
            update["worker_ref"] = ref.model_copy(update={"runtime_id": self.runtime_id})
        if isinstance(model, WorkerSummary) and model.runtime_id != self.runtime_id:
            update["runtime_id"] = self.runtime_id
        return cast(T, model.model_copy(update=update)) if update else value

    # -- operations --------------------------------------------------------------------------

    async def info(self) -> RuntimeInfo:
        health = self._health
        return RuntimeInfo(
            runtime_id=self.runtime_id,
            display_name=self.display_name,
            kind="remote",
            implementation="yoi-runtime (HTTP)",
            status=health.status,
            capabilities=ALL_CAPABILITIES,
            diagnostics=list(health.diagnostics),
            counts=health.counts,
        )

    async def list_workers(
        self, *, status: str | None, limit: int | None, after: str | None
    ) -> WorkerPage:
        return await self._call(
            lambda: self._client.list_workers(status=status, limit=limit, after=after)
        )

    async def create_worker(self, request: CreateWorkerRequest) -> WorkerDetail:
        return await self._call(lambda: self._client.create_worker(request))

    async def get_worker(self, worker_id: str) -> WorkerDetail:
        return await self._call(lambda: self._client.get_worker(worker_id))

    async def send_input(self, worker_id: str, request: InputRequest) -> InputAck:
        return await self._call(lambda: self._client.send_input(worker_id, request))

    async def stop_worker(self, worker_id: str, reason: str | None) -> StopAck:
        return await self._call(lambda: self._client.stop_worker(worker_id, reason=reason))

    async def cancel(self, worker_id: str, turn_id: str | None, reason: str | None) -> CancelAck:
        return await self._call(
            lambda: self._client.cancel(worker_id, turn_id=turn_id, reason=reason)
        )

    async def read_transcript(
        self, worker_id: str, start: int, limit: int | None
    ) -> TranscriptPage:
        return await self._call(
            lambda: self._client.read_transcript(worker_id, start=start, limit=limit)
        )

    async def list_profiles(self) -> list[ProfileEntry]:
        return await self._call(self._client.list_profiles)

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        return await self._call(lambda: self._client.diagnostics(limit))

    async def open_events(
        self, worker_id: str | None, cursor: str | None
    ) -> AsyncGenerator[Event, None]:
        """The Worker must exist (checked now); then its events (every Worker's without
        ``worker_id``), as :meth:`_events`. A Worker's stream with no ``cursor`` starts at the
        Worker's last event as of now, not when the remote stream connects, so nothing that
        happens in between is missed."""
        if worker_id is not None:
            worker = await self.get_worker(worker_id)
            if cursor is None:
                cursor = worker.last_cursor
        return self._events(worker_id, cursor)

    async def _events(
        self, worker_id: str | None, cursor: str | None
    ) -> AsyncGenerator[Event, None]:
        """The remote's events, kept alive across its outages by the client's reconnect: the
        browser gets one ``runtime_unavailable`` notice per outage (the remote's own
        ``runtime_shutdown`` notices are not passed on), and the stream resumes from the last
        cursor when the remote is back, with nothing lost or repeated. Ends with
        ``runtime_shutdown`` when the Backend shuts down (:meth:`end_streams`)."""
        scope = anyio.CancelScope()
        self._streams.add(scope)
        try:
            with scope:
                stream = self._stream_client.stream_events(
                    cursor=cursor, worker_id=worker_id, outage_notices=True
                )
                async with aclosing(stream):
                    async for event in stream:
                        if event.cursor is None and event.data.get("code") == "runtime_shutdown":
                            continue
                        if worker_id is not None and event.worker_id not in (None, worker_id):
                            self._dropped_event(worker_id)
                            continue
                        # The source's identity, whatever the remote wrote: a remote speaks
                        # for itself only.
                        yield replace(
                            event,
                            runtime_id=self.runtime_id,
                            data=_own_ids(event.data, self.runtime_id),
                        )
                return  # resync_required: the remote ended the stream for good
        except Unauthorized:
            raise _auth_failed() from None
        finally:
            self._streams.discard(scope)
        yield notice(self.runtime_id, worker_id, "runtime_shutdown", self._end_message)

    def end_streams(self, message: str = "the Backend is shutting down") -> None:
        """End every open stream of this source with a ``runtime_shutdown`` notice."""
        self._end_message = message
        for scope in list(self._streams):
            scope.cancel()

    def _dropped_event(self, worker_id: str) -> None:
        """A remote sent another Worker's event on this Worker's stream: not relayed, and said
        in the source's diagnostics."""
        log.warning("runtime %s sent an event of another Worker; dropped", self.runtime_id)
        self._health.diagnostics = [
            d for d in self._health.diagnostics if d.code != "remote.event_dropped"
        ] + [
            SourceDiagnostic(
                severity="warning",
                code="remote.event_dropped",
                message=f"an event labelled with another Worker arrived on the stream of "
                f"{worker_id} and was dropped",
                at=now_rfc3339(),
            )
        ]

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._stream_client.aclose()


def _own_ids(value: Any, runtime_id: str) -> Any:
    """``value`` (an event's data) with every ``runtime_id`` in it set to ``runtime_id``."""
    if isinstance(value, dict):
        return {
            k: runtime_id if k == "runtime_id" else _own_ids(v, runtime_id)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_own_ids(v, runtime_id) for v in value]
    return value


def _reason_of(error: RuntimeUnavailable) -> str:
    reason = error.details.get("reason")
    if isinstance(reason, str) and reason.isidentifier() and len(reason) <= 40:
        return reason
    return "unreachable"


READ_ONLY = Capabilities(
    can_create=False,
    can_input=False,
    can_stop=False,
    can_cancel=False,
    can_read_transcript=True,
    can_stream_events=False,
)


class LocalSource:
    """A read-only projection of an fs-store root that no live source serves. Every read
    first catches up with the store (a live process may be appending to it); every command
    is ``unsupported_operation``. Its root path never leaves this object."""

    kind: SourceKind = "local_compatibility"

    def __init__(self, reader: FsStoreReader, display_name: str | None = None) -> None:
        self._reader = reader
        self._lock = anyio.Lock()
        self.runtime_id = reader.runtime_id
        self.display_name = display_name or f"{reader.runtime_id} (local store, read-only)"

    @classmethod
    async def open(cls, root: Path, display_name: str | None = None) -> LocalSource:
        """Read the root once (its runtime_id names the source)."""
        reader = FsStoreReader(root)
        await anyio.to_thread.run_sync(reader.refresh)
        return cls(reader, display_name)

    def __repr__(self) -> str:
        return f"LocalSource(runtime_id={self.runtime_id!r})"

    async def _read(self, call: Callable[[], T]) -> T:
        """Catch up with the store, then read, in a worker thread (both are file I/O)."""
        reader = self._reader

        def refresh_and_read() -> T:
            reader.refresh()
            if reader.runtime_id != self.runtime_id:
                raise StoreCorrupt("the store root now belongs to another runtime")
            return call()

        async with self._lock:
            try:
                return await anyio.to_thread.run_sync(refresh_and_read)
            except StoreCorrupt as exc:
                raise RuntimeUnavailable(
                    f"the local store cannot be read: {exc.message}",
                    details={"reason": "store_unreadable"},
                ) from None

    def _unsupported(self, operation: str) -> UnsupportedOperation:
        return UnsupportedOperation(
            f"{operation} is not supported: a local store is shown read-only",
            details={"runtime_id": self.runtime_id, "kind": self.kind},
        )

    async def info(self) -> RuntimeInfo:
        at = now_rfc3339()
        diagnostics = [
            SourceDiagnostic(
                severity="info",
                code="local.read_only",
                message="a read-only projection of a Runtime's store on this machine; "
                "commands are not supported",
                at=at,
            )
        ]
        counts: RuntimeCounts | None = None
        try:
            alive, counts = await self._read(
                lambda: (self._reader.writer_alive, self._reader.counts())
            )
        except RuntimeUnavailable as exc:
            diagnostics.append(
                SourceDiagnostic(
                    severity="error", code="local.store_unreadable", message=exc.message, at=at
                )
            )
            status: SourceStatus = "unavailable"
        else:
            status = "running" if alive else "stopped"
            if alive:
                diagnostics.append(
                    SourceDiagnostic(
                        severity="info",
                        code="local.live_writer",
                        message="a Runtime process is writing to this store; the view "
                        "follows it on every read",
                        at=at,
                    )
                )
            if self._reader.skipped_workers:
                diagnostics.append(
                    SourceDiagnostic(
                        severity="warning",
                        code="local.worker_skipped",
                        message=f"{self._reader.skipped_workers} Worker record(s) could not "
                        "be read and are not shown",
                        at=at,
                    )
                )
        return RuntimeInfo(
            runtime_id=self.runtime_id,
            display_name=self.display_name,
            kind=self.kind,
            implementation="fs-store root (read-only)",
            status=status,
            capabilities=READ_ONLY,
            diagnostics=diagnostics,
            counts=counts,
        )

    async def list_workers(
        self, *, status: str | None, limit: int | None, after: str | None
    ) -> WorkerPage:
        return await self._read(
            lambda: self._reader.list_workers(status=status, limit=limit, after=after)
        )

    async def create_worker(self, request: CreateWorkerRequest) -> WorkerDetail:
        raise self._unsupported("create")

    async def get_worker(self, worker_id: str) -> WorkerDetail:
        return await self._read(lambda: self._reader.get_worker(worker_id))

    async def send_input(self, worker_id: str, request: InputRequest) -> InputAck:
        raise self._unsupported("input")

    async def stop_worker(self, worker_id: str, reason: str | None) -> StopAck:
        raise self._unsupported("stop")

    async def cancel(self, worker_id: str, turn_id: str | None, reason: str | None) -> CancelAck:
        raise self._unsupported("cancel")

    async def read_transcript(
        self, worker_id: str, start: int, limit: int | None
    ) -> TranscriptPage:
        return await self._read(
            lambda: self._reader.read_transcript(worker_id, start=start, limit=limit)
        )

    async def list_profiles(self) -> list[ProfileEntry]:
        raise self._unsupported("listing profiles")

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        # A Runtime's diagnostics live in its process, not in its store.
        raise self._unsupported("reading a Runtime's diagnostics")

    async def open_events(
        self, worker_id: str | None, cursor: str | None
    ) -> AsyncGenerator[Event, None]:
        raise self._unsupported("streaming events")

    async def aclose(self) -> None:
        return None
