"""The browser-facing API of the Workspace Backend (contract §10), all under ``/api``.

Routes are runtime-scoped (``/api/runtimes/{runtime_id}/workers/{worker_id}/…``): the pair
runtime_id + worker_id is the authority, so two runtimes may hold the same worker_id. One
aggregate list, ``GET /api/workers``, shows every Worker of every source with its runtime_id.

Cursors the browser sees are the Backend's own: each wraps the runtime it belongs to and that
runtime's cursor, so a browser resumes through the Backend across the Backend's reconnects to
a remote runtime. Nothing here ever returns a store path, a runtime URL or a token.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Annotated

import anyio
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import Response
from starlette.types import ASGIApp

from worker_runtime import (
    CreateWorkerRequest,
    InputRequest,
    InvalidInput,
    RuntimeUnavailable,
)
from worker_runtime.http import DirectRoute, install_error_handlers, validate_body
from worker_runtime.http.stream import SseResponse
from worker_runtime.models import WorkerStatus, require_id

from . import __version__
from ._bodies import CancelBody, RegisterRuntime, StopBody, _header_text
from ._console import ConsoleFiles
from ._openapi import body, describe
from ._stream import MAX_CURSOR_CHARS, CompositeCursor, merged_messages, open_sources
from ._streamroutes import _messages, _parse_kinds, _StreamSlots
from .cursors import (
    BrowserCancelAck,
    BrowserInputAck,
    BrowserStopAck,
    BrowserTranscriptPage,
    BrowserWorkerDetail,
    BrowserWorkerPage,
    BrowserWorkerSummary,
    for_browser,
    unwrap_cursor,
    wrap_error_cursors,
)
from .registry import RemoteRecord, RuntimeRegistry
from .responses import (
    AllWorkers,
    CancelAckBody,
    Diagnostics,
    Health,
    InputAckBody,
    Profiles,
    Removed,
    RuntimeBody,
    Runtimes,
    StopAckBody,
    TranscriptBody,
    UnavailableRow,
    WorkerBody,
    json_response,
)
from .session_api import install_session_routes
from .sessions import FailedLogins, Sessions
from .settings import BackendSettings
from .sources import Source
from .trust import TrustBoundary, TrustSettings

__all__ = ["BackendSettings", "create_backend_app"]

log = logging.getLogger("yoi_workspace_server.app")

_CURSOR_PREFIX = "b1."


def create_backend_app(
    registry: RuntimeRegistry, settings: BackendSettings, sessions: Sessions | None = None
) -> ASGIApp:
    """The Backend's ASGI app over ``registry``, behind the browser trust boundary
    (:class:`~.trust.TrustBoundary`). ``sessions``: the session table (the control plane's
    in ``yoi-workspace-server``; an in-memory database when ``None``)."""
    if sessions is None:
        sessions = Sessions(
            sqlite3.connect(":memory:", check_same_thread=False),
            idle_s=settings.session_idle_s,
            max_s=settings.session_max_s,
        )
    trust = TrustSettings(
        token=settings.token,
        bound_host=settings.bound_host,
        allowed_hosts=settings.allowed_hosts,
        public_url=settings.public_url,
        max_body_bytes=settings.max_body_bytes,
    )
    app = FastAPI(
        title="yoi Workspace Backend",
        version=__version__,
        description="The browser-facing API over every registered Runtime.",
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = DirectRoute
    # No slash redirects: their Location is built from the client's Host header.
    app.router.redirect_slashes = False
    install_error_handlers(app)
    describe(app, (InputRequest, RegisterRuntime, CreateWorkerRequest, StopBody, CancelBody))
    streams = _StreamSlots(settings.max_streams)
    deadline_s = registry.limits.reply.deadline_s
    boundary = TrustBoundary(
        ConsoleFiles(app), trust, sessions, FailedLogins(budget=settings.failed_login_budget)
    )
    install_session_routes(app, boundary)

    def source(runtime_id: str) -> Source:
        return registry.get(require_id(runtime_id, "runtime_id"))

    def worker_id_of(worker_id: str) -> str:
        return require_id(worker_id, "worker_id")

    # The hot route first: Starlette matches routes in order.
    @app.post(
        "/api/runtimes/{runtime_id}/workers/{worker_id}/input", openapi_extra=body(InputRequest)
    )
    async def send_input(runtime_id: str, worker_id: str, request: Request) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        body = validate_body(InputRequest, await request.body())
        ack = for_browser(runtime_id, await s.api.send_input(wid, body), BrowserInputAck)
        return json_response(InputAckBody(ack=ack))

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response(Health())

    @app.get("/api/runtimes")
    async def list_runtimes() -> Response:
        return json_response(Runtimes(runtimes=[await s.info() for s in registry.sources()]))

    @app.post("/api/runtimes", status_code=201, openapi_extra=body(RegisterRuntime))
    async def register_runtime(request: Request) -> Response:
        body: RegisterRuntime = validate_body(RegisterRuntime, await request.body())
        record = RemoteRecord(
            runtime_id=body.runtime_id,
            display_name=body.display_name or body.runtime_id,
            base_url=body.base_url,
            token=body.token or "",
        )
        remote = await registry.add_remote(record, persist=True)
        return json_response(RuntimeBody(runtime=await remote.info()), 201)

    @app.get("/api/runtimes/{runtime_id}")
    async def get_runtime(runtime_id: str) -> Response:
        return json_response(RuntimeBody(runtime=await source(runtime_id).info()))

    @app.delete("/api/runtimes/{runtime_id}")
    async def remove_runtime(runtime_id: str) -> Response:
        await registry.remove(require_id(runtime_id, "runtime_id"))
        return json_response(Removed(removed=runtime_id))

    @app.get("/api/workers")
    async def all_workers(limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> Response:
        """Every Worker of every available source (up to ``limit`` per source), each row
        with its runtime_id; an unavailable source is listed in ``diagnostics`` instead."""
        sources = registry.sources()
        results: list[list[BrowserWorkerSummary] | UnavailableRow] = [
            UnavailableRow(runtime_id=s.runtime_id, reason="timeout") for s in sources
        ]

        async def ask(i: int, s: Source) -> None:
            # All sources at once, each within its own deadline: a slow one delays nobody.
            known = s.unavailable_reason()
            if known is not None:
                results[i] = UnavailableRow(runtime_id=s.runtime_id, reason=known)
                return
            with anyio.move_on_after(deadline_s):
                try:
                    page = await s.api.list_workers(limit=limit)
                except RuntimeUnavailable as exc:
                    reason = exc.details.get("reason")
                    results[i] = UnavailableRow(
                        runtime_id=s.runtime_id,
                        reason=reason if isinstance(reason, str) else "unreachable",
                    )
                    return
                rid = s.runtime_id
                results[i] = [for_browser(rid, w, BrowserWorkerSummary) for w in page.workers]

        async with anyio.create_task_group() as tg:
            for i, s in enumerate(sources):
                tg.start_soon(ask, i, s)
        rows: list[BrowserWorkerSummary] = []
        diagnostics: list[UnavailableRow] = []
        for result in results:
            if isinstance(result, list):
                rows.extend(result)
            else:
                diagnostics.append(result)
        return json_response(AllWorkers(workers=rows, diagnostics=diagnostics))

    @app.get("/api/runtimes/{runtime_id}/profiles")
    async def list_profiles(runtime_id: str) -> Response:
        """The profiles a Worker of this runtime may be created on; never a credential."""
        profiles = await source(runtime_id).api.list_profiles()
        return json_response(Profiles(profiles=profiles))

    @app.get("/api/runtimes/{runtime_id}/diagnostics")
    async def runtime_diagnostics(
        runtime_id: str, limit: Annotated[int | None, Query(ge=1)] = None
    ) -> Response:
        """The Runtime's own newest diagnostics, oldest first, each with its ``worker_id``
        (``None``: the runtime's); ``limit`` is capped by the Runtime's ``max_diagnostics``."""
        diagnostics = await source(runtime_id).api.diagnostics(limit=limit)
        return json_response(Diagnostics(diagnostics=diagnostics))

    @app.get("/api/events")
    async def all_events(
        runtime_id: Annotated[str | None, Query(max_length=120)] = None,
        worker_id: Annotated[str | None, Query(max_length=120)] = None,
        kinds: Annotated[str | None, Query(max_length=1000)] = None,
        cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=MAX_CURSOR_CHARS)
        ] = None,
    ) -> SseResponse:
        """One stream over every source (or one runtime, or one Worker of it), resumable
        from its composite cursor; see :mod:`._stream`."""
        rid = require_id(runtime_id, "runtime_id") if runtime_id is not None else None
        wid = worker_id_of(worker_id) if worker_id is not None else None
        if wid is not None and rid is None:
            raise InvalidInput(
                "worker_id needs runtime_id: a worker_id is unique within its runtime only",
                details={"field": "worker_id"},
            )
        wanted = _header_text(last_event_id) or cursor
        start = CompositeCursor.decode(wanted) if wanted else CompositeCursor()
        wanted_kinds = _parse_kinds(kinds)
        opened = await open_sources(registry, rid, wid, start)
        capped = [registry.get(r) for r, _ in opened]
        try:
            streams.acquire(*capped)
        except BaseException:
            for _, events in opened:
                await events.aclose()
            raise
        messages = merged_messages(registry, opened, wid, wanted_kinds, start)

        async def close() -> None:
            try:
                await messages.aclose()
            finally:
                streams.release(*capped)

        return SseResponse(messages, heartbeat_s=settings.heartbeat_s, on_close=close)

    @app.get("/api/runtimes/{runtime_id}/workers")
    async def list_workers(
        runtime_id: str,
        status: Annotated[WorkerStatus | None, Query()] = None,
        limit: Annotated[int | None, Query(ge=1)] = None,
        after: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        page = await source(runtime_id).api.list_workers(status=status, limit=limit, after=after)
        return json_response(for_browser(runtime_id, page, BrowserWorkerPage))

    @app.post(
        "/api/runtimes/{runtime_id}/workers",
        status_code=201,
        openapi_extra=body(CreateWorkerRequest, required=False),
    )
    async def create_worker(runtime_id: str, request: Request) -> Response:
        s = source(runtime_id)
        body = validate_body(CreateWorkerRequest, await request.body(), optional=True)
        worker = for_browser(runtime_id, await s.api.create_worker(body), BrowserWorkerDetail)
        return json_response(WorkerBody(worker=worker), 201)

    @app.get("/api/runtimes/{runtime_id}/workers/{worker_id}")
    async def get_worker(runtime_id: str, worker_id: str) -> Response:
        s = source(runtime_id)
        worker = await s.api.get_worker(worker_id_of(worker_id))
        return json_response(
            WorkerBody(worker=for_browser(runtime_id, worker, BrowserWorkerDetail))
        )

    @app.post(
        "/api/runtimes/{runtime_id}/workers/{worker_id}/stop",
        openapi_extra=body(StopBody, required=False),
    )
    async def stop_worker(runtime_id: str, worker_id: str, request: Request) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        body: StopBody = validate_body(StopBody, await request.body(), optional=True)
        ack = await s.api.stop_worker(wid, reason=body.reason)
        return json_response(StopAckBody(ack=for_browser(runtime_id, ack, BrowserStopAck)))

    @app.post(
        "/api/runtimes/{runtime_id}/workers/{worker_id}/cancel",
        openapi_extra=body(CancelBody, required=False),
    )
    async def cancel(runtime_id: str, worker_id: str, request: Request) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        body: CancelBody = validate_body(CancelBody, await request.body(), optional=True)
        ack = await s.api.cancel(wid, turn_id=body.turn_id, reason=body.reason)
        return json_response(CancelAckBody(ack=for_browser(runtime_id, ack, BrowserCancelAck)))

    @app.get("/api/runtimes/{runtime_id}/workers/{worker_id}/transcript")
    async def read_transcript(
        runtime_id: str,
        worker_id: str,
        start: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1)] = None,
    ) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        page = await s.api.read_transcript(wid, start=start, limit=limit)
        transcript = for_browser(runtime_id, page, BrowserTranscriptPage)
        return json_response(TranscriptBody(transcript=transcript))

    @app.get("/api/runtimes/{runtime_id}/workers/{worker_id}/events")
    async def worker_events(
        runtime_id: str,
        worker_id: str,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=400)] = None,
    ) -> SseResponse:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        wanted = _header_text(last_event_id) or cursor
        inner = unwrap_cursor(runtime_id, wanted) if wanted else None
        streams.acquire(s)
        try:
            events = await s.open_events(wid, inner)  # errors here are plain HTTP errors
        except BaseException as exc:
            streams.release(s)
            wrap_error_cursors(runtime_id, exc)
            raise

        async def close() -> None:
            try:
                await events.aclose()
            finally:
                streams.release(s)

        return SseResponse(
            _messages(runtime_id, wid, events), heartbeat_s=settings.heartbeat_s, on_close=close
        )

    return boundary
