"""The Backend's own in-process Runtime, called directly: no HTTP, no token, no socket."""

from __future__ import annotations

from worker_runtime import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    EventStream,
    InputAck,
    InputRequest,
    ProfileEntry,
    Runtime,
    RuntimeAPI,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerPage,
)

from .base import ALL_CAPABILITIES, RuntimeInfo, Source, SourceDiagnostic

__all__ = ["EmbeddedSource"]


class EmbeddedSource(Source):
    """The embedded Runtime: every verb, its own diagnostics (``embedded.`` codes)."""

    kind = "embedded"

    def __init__(self, runtime: Runtime, display_name: str) -> None:
        super().__init__(runtime.runtime_id, display_name, _api_of(runtime), ALL_CAPABILITIES)
        self.runtime = runtime

    async def info(self) -> RuntimeInfo:
        summary = await self.api.summary()
        diagnostics = [
            SourceDiagnostic(
                severity=d.severity, code=f"embedded.{d.code}", message=d.message, at=d.at
            )
            for d in await self.api.diagnostics(limit=20)
        ]
        return RuntimeInfo(
            runtime_id=self.runtime_id,
            display_name=self.display_name,
            kind="embedded",
            implementation=f"worker_runtime.Runtime ({summary.store} store)",
            status="running" if summary.status == "running" else "stopped",
            capabilities=self.capabilities,
            diagnostics=diagnostics,
            counts=summary.counts,
        )


def _api_of(runtime: Runtime) -> RuntimeAPI:
    """``runtime`` as a :class:`~worker_runtime.RuntimeAPI`.

    MERGE: once ``Runtime`` implements ``RuntimeAPI`` (str worker ids, ``events()``; the core
    part of issue #13), this is ``return runtime`` and :class:`_RuntimeAsAPI` goes.
    """
    return _RuntimeAsAPI(runtime)


class _RuntimeAsAPI:
    """The Runtime's verbs with a ``worker_id: str`` instead of a ``WorkerRef``."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def summary(self) -> RuntimeSummary:
        return await self._rt.summary()

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        return await self._rt.diagnostics(limit)

    async def list_profiles(self) -> list[ProfileEntry]:
        return await self._rt.list_profiles()

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        return await self._rt.list_workers(status=status, limit=limit, after=after)

    async def create_worker(self, request: CreateWorkerRequest | None = None) -> WorkerDetail:
        return await self._rt.create_worker(request)

    async def get_worker(self, worker_id: str, /) -> WorkerDetail:
        return await self._rt.get_worker(self._rt.ref(worker_id))

    async def stop_worker(self, worker_id: str, /, *, reason: str | None = None) -> StopAck:
        return await self._rt.stop_worker(self._rt.ref(worker_id), reason=reason)

    async def cancel(
        self, worker_id: str, /, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        return await self._rt.cancel(self._rt.ref(worker_id), turn_id=turn_id, reason=reason)

    async def send_input(self, worker_id: str, request: InputRequest, /) -> InputAck:
        return await self._rt.send_input(self._rt.ref(worker_id), request)

    async def read_transcript(
        self, worker_id: str, /, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        ref = self._rt.ref(worker_id)
        return await self._rt.read_transcript(ref, start=start, limit=limit)

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        worker = self._rt.ref(worker_id) if worker_id is not None else None
        return self._rt.subscribe(cursor=cursor, worker=worker)
