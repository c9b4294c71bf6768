"""A ``yoi-runtime`` process, reached through :class:`~worker_runtime.client.RuntimeClient`;
its URL and token stay server-side. A health poll with backoff keeps its status current.

Its ``api`` relays every verb to the client, with what the Backend adds for a remote: a
remote speaks for itself only (its replies and events carry this source's runtime_id), a
refused token is ``runtime_unavailable`` (``auth_failed``), never the browser's 401, and an
error code the Backend does not know is ``bad_reply``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

import anyio
from pydantic import BaseModel

from worker_runtime import (
    Event,
    RuntimeUnavailable,
    Unauthorized,
    WorkerPage,
    WorkerRef,
    WorkerRuntimeError,
    WorkerSummary,
)
from worker_runtime.client import RuntimeClient
from worker_runtime.events import notice, now_rfc3339
from worker_runtime.models import RuntimeCounts

from .._transport import AiohttpTransport, ReplyLimits
from ._relay import _Relay
from .base import (
    ALL_CAPABILITIES,
    RuntimeInfo,
    Source,
    SourceDiagnostic,
    SourceEvents,
    SourceStatus,
)

__all__ = ["RemoteSource"]

log = logging.getLogger("yoi_workspace_server.sources")

T = TypeVar("T")


def _auth_failed() -> RuntimeUnavailable:
    return RuntimeUnavailable(
        "the runtime refused the Backend's token", details={"reason": "auth_failed"}
    )


@dataclass
class _Health:
    status: SourceStatus = "unavailable"
    reason: str = "unreachable"
    checked_at: str = ""
    failures: int = 0
    diagnostics: list[SourceDiagnostic] = field(default_factory=list)
    counts: RuntimeCounts | None = None


class RemoteSource(Source):
    """A ``yoi-runtime`` process. Its base URL and token never leave this object: its repr,
    its errors and its diagnostics carry neither. It can be removed, and has its own cap on
    open browser streams (``max_streams``: its stream pool)."""

    kind = "remote"
    removable = True

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
        super().__init__(runtime_id, display_name, _Relay(self), ALL_CAPABILITIES)
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
        self.stream_cap = max_streams
        self._poll_s = poll_s
        self._health = _Health()
        if last_known is not None and last_known[0] in ("running", "stopped", "unavailable"):
            self._health.status = cast(SourceStatus, last_known[0])
            self._health.reason = last_known[1]
        self._on_status = on_status
        self._streams: set[anyio.CancelScope] = set()
        self._end_message = "the Backend is shutting down"
        self._closed = False

    @property
    def status(self) -> SourceStatus:
        return self._health.status

    # -- health ------------------------------------------------------------------------------

    async def check(self) -> None:
        """Ask the remote for its summary once and record what that says. Never raises:
        whatever the remote answers is a status of this source only. Once the source is
        closed, nothing is checked (or recorded)."""
        if self._closed:
            return
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

    def unavailable_reason(self) -> str | None:
        """Why the last health check found the remote unavailable (``None``: it did not)."""
        if self._health.status != "unavailable":
            return None
        return self._health.reason or "unreachable"

    async def _call(self, call: Awaitable[T]) -> T:
        """One command. A remote that answered as another runtime_id gets none: the pair
        runtime_id + worker_id is the authority."""
        if self._health.reason == "runtime_id_mismatch":
            if isinstance(call, Coroutine):
                call.close()  # never sent
            raise RuntimeUnavailable(
                "the runtime at that address reports another runtime_id",
                details={"reason": "runtime_id_mismatch"},
            )
        try:
            return self._stamped(await call)
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
            capabilities=self.capabilities,
            diagnostics=list(health.diagnostics),
            counts=health.counts,
        )

    async def open_events(self, worker_id: str | None, cursor: str | None) -> SourceEvents:
        """The Worker must exist (checked now); then its events (every Worker's without
        ``worker_id``), as :meth:`_events`. A Worker's stream with no ``cursor`` starts at the
        Worker's last event as of now, not when the remote stream connects, so nothing that
        happens in between is missed."""
        if worker_id is not None:
            worker = await self.api.get_worker(worker_id)
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
        self._closed = True
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
