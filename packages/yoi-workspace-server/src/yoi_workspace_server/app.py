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

import anyio
from starlette.requests import Request
from starlette.responses import Response

from worker_runtime import (
    CreateWorkerRequest,
    InputRequest,
    InvalidInput,
    RuntimeUnavailable,
)
from worker_runtime.http import (
    CancelRequest,
    DiagnosticsQuery,
    ListWorkersQuery,
    Operation,
    OperationsApp,
    StopRequest,
    TranscriptQuery,
    read_body,
    validate_body,
    validate_query,
)
from worker_runtime.http.stream import SSE_RESPONSE, SseResponse, last_event_id
from worker_runtime.models import require_id

from . import __version__
from ._bodies import (
    AllEventsQuery,
    AllWorkersQuery,
    RegisterRuntime,
    WorkerEventsQuery,
)
from ._console import ConsoleFiles
from ._openapi import ERROR_STATUSES, PATH_PARAMS
from ._stream import MAX_CURSOR_CHARS, CompositeCursor, merged_messages, open_sources
from ._streamroutes import _messages, _parse_kinds, _StreamSlots
from .cursors import (
    MAX_CHARS,
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
from .session_api import session_operations
from .sessions import FailedLogins, Sessions
from .settings import BackendSettings
from .sources import Source
from .trust import TrustBoundary, TrustSettings

__all__ = ["BackendSettings", "create_backend_app"]

log = logging.getLogger("yoi_workspace_server.app")

_LAST_EVENT_ID = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def create_backend_app(
    registry: RuntimeRegistry, settings: BackendSettings, sessions: Sessions
) -> TrustBoundary:
    """The Backend's ASGI app over ``registry``, behind the browser trust boundary
    (:class:`~.trust.TrustBoundary`): the console's files (:class:`~._console.ConsoleFiles`)
    in front of the API (an :class:`~worker_runtime.http.OperationsApp`). ``sessions``: the
    session table, in the database of the registry's control plane (whoever owns that
    database closes it)."""
    trust = TrustSettings(
        token=settings.token,
        bound_host=settings.bound_host,
        allowed_hosts=settings.allowed_hosts,
        public_url=settings.public_url,
        max_body_bytes=settings.max_body_bytes,
    )
    api = OperationsApp(
        [*_operations(registry, settings), *session_operations(lambda: boundary)],
        title="yoi Workspace Backend",
        version=__version__,
        description="The browser-facing API over every registered Runtime.",
        error_statuses=ERROR_STATUSES,
        path_params=PATH_PARAMS,
    )
    failures = FailedLogins(budget=settings.failed_login_budget)
    boundary = TrustBoundary(ConsoleFiles(api), trust, sessions, failures)
    return boundary


def _operations(registry: RuntimeRegistry, settings: BackendSettings) -> list[Operation]:
    """The API's operations over ``registry`` (the hot route first: routes match in order)."""
    streams = _StreamSlots(settings.max_streams)
    deadline_s = registry.limits.reply.deadline_s

    def source(request: Request) -> Source:
        return registry.get(require_id(request.path_params["runtime_id"], "runtime_id"))

    def worker_id_of(request: Request) -> str:
        return require_id(request.path_params["worker_id"], "worker_id")

    async def send_input(request: Request) -> Response:
        s, wid = source(request), worker_id_of(request)
        body = validate_body(InputRequest, await read_body(request))
        ack = await s.api.send_input(wid, body)
        return json_response(InputAckBody(ack=for_browser(s.runtime_id, ack, BrowserInputAck)))

    async def healthz(request: Request) -> Response:
        """Liveness; the only route that needs no sign-in."""
        return json_response(Health())

    async def list_runtimes(request: Request) -> Response:
        return json_response(Runtimes(runtimes=[await s.info() for s in registry.sources()]))

    async def register_runtime(request: Request) -> Response:
        """Register a remote Runtime by its URL and token (kept server-side, never shown)."""
        body = validate_body(RegisterRuntime, await read_body(request))
        record = RemoteRecord(
            runtime_id=body.runtime_id,
            display_name=body.display_name or body.runtime_id,
            base_url=body.base_url,
            token=body.token or "",
        )
        remote = await registry.add_remote(record, persist=True)
        return json_response(RuntimeBody(runtime=await remote.info()), 201)

    async def get_runtime(request: Request) -> Response:
        return json_response(RuntimeBody(runtime=await source(request).info()))

    async def remove_runtime(request: Request) -> Response:
        runtime_id = require_id(request.path_params["runtime_id"], "runtime_id")
        await registry.remove(runtime_id)
        return json_response(Removed(removed=runtime_id))

    async def all_workers(request: Request) -> Response:
        """Every Worker of every available source (up to ``limit`` per source), each row
        with its runtime_id; an unavailable source is listed in ``diagnostics`` instead."""
        limit = validate_query(AllWorkersQuery, request.query_params).limit
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

    async def list_profiles(request: Request) -> Response:
        """The profiles a Worker of this runtime may be created on; never a credential."""
        profiles = await source(request).api.list_profiles()
        return json_response(Profiles(profiles=profiles))

    async def runtime_diagnostics(request: Request) -> Response:
        """The Runtime's own newest diagnostics, oldest first, each with its ``worker_id``
        (``None``: the runtime's); ``limit`` is capped by the Runtime's ``max_diagnostics``."""
        query = validate_query(DiagnosticsQuery, request.query_params)
        s = source(request)
        return json_response(Diagnostics(diagnostics=await s.api.diagnostics(limit=query.limit)))

    async def all_events(request: Request) -> Response:
        """One stream over every source (or one runtime, or one Worker of it), resumable
        from its composite cursor; ``Last-Event-ID``, when sent, is the cursor."""
        query = validate_query(AllEventsQuery, request.query_params)
        wanted = last_event_id(request, MAX_CURSOR_CHARS) or query.cursor
        rid = require_id(query.runtime_id, "runtime_id") if query.runtime_id is not None else None
        wid = require_id(query.worker_id, "worker_id") if query.worker_id is not None else None
        if wid is not None and rid is None:
            raise InvalidInput(
                "worker_id needs runtime_id: a worker_id is unique within its runtime only",
                details={"field": "worker_id"},
            )
        start = CompositeCursor.decode(wanted) if wanted else CompositeCursor()
        wanted_kinds = _parse_kinds(query.kinds)
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

    async def list_workers(request: Request) -> Response:
        query = validate_query(ListWorkersQuery, request.query_params)
        s = source(request)
        page = await s.api.list_workers(status=query.status, limit=query.limit, after=query.after)
        return json_response(for_browser(s.runtime_id, page, BrowserWorkerPage))

    async def create_worker(request: Request) -> Response:
        s = source(request)
        body = validate_body(CreateWorkerRequest, await read_body(request), optional=True)
        worker = for_browser(s.runtime_id, await s.api.create_worker(body), BrowserWorkerDetail)
        return json_response(WorkerBody(worker=worker), 201)

    async def get_worker(request: Request) -> Response:
        s = source(request)
        worker = await s.api.get_worker(worker_id_of(request))
        return json_response(
            WorkerBody(worker=for_browser(s.runtime_id, worker, BrowserWorkerDetail))
        )

    async def stop_worker(request: Request) -> Response:
        s, wid = source(request), worker_id_of(request)
        body = validate_body(StopRequest, await read_body(request), optional=True)
        ack = await s.api.stop_worker(wid, reason=body.reason)
        return json_response(StopAckBody(ack=for_browser(s.runtime_id, ack, BrowserStopAck)))

    async def cancel(request: Request) -> Response:
        s, wid = source(request), worker_id_of(request)
        body = validate_body(CancelRequest, await read_body(request), optional=True)
        ack = await s.api.cancel(wid, turn_id=body.turn_id, reason=body.reason)
        return json_response(CancelAckBody(ack=for_browser(s.runtime_id, ack, BrowserCancelAck)))

    async def read_transcript(request: Request) -> Response:
        query = validate_query(TranscriptQuery, request.query_params)
        s, wid = source(request), worker_id_of(request)
        page = await s.api.read_transcript(wid, start=query.start, limit=query.limit)
        transcript = for_browser(s.runtime_id, page, BrowserTranscriptPage)
        return json_response(TranscriptBody(transcript=transcript))

    async def worker_events(request: Request) -> Response:
        """One Worker's events after ``cursor`` (new events only without); ``Last-Event-ID``,
        when sent, is the cursor."""
        query = validate_query(WorkerEventsQuery, request.query_params)
        wanted = last_event_id(request, MAX_CHARS) or query.cursor
        s, wid = source(request), worker_id_of(request)
        inner = unwrap_cursor(s.runtime_id, wanted) if wanted else None
        streams.acquire(s)
        try:
            events = await s.open_events(wid, inner)  # errors here are plain HTTP errors
        except BaseException as exc:
            streams.release(s)
            wrap_error_cursors(s.runtime_id, exc)
            raise

        async def close() -> None:
            try:
                await events.aclose()
            finally:
                streams.release(s)

        return SseResponse(
            _messages(s.runtime_id, wid, events), heartbeat_s=settings.heartbeat_s, on_close=close
        )

    runtime = "/api/runtimes/{runtime_id}"
    worker = f"{runtime}/workers/{{worker_id}}"
    last_event = (("Last-Event-ID", _LAST_EVENT_ID),)
    return [
        Operation(
            "POST", f"{worker}/input", send_input, "workers", InputAckBody, body=InputRequest
        ),
        Operation("GET", "/healthz", healthz, "health", Health),
        Operation("GET", "/api/runtimes", list_runtimes, "runtimes", Runtimes),
        Operation(
            "POST", "/api/runtimes", register_runtime, "runtimes", RuntimeBody, 201,
            body=RegisterRuntime,
        ),
        Operation("GET", runtime, get_runtime, "runtimes", RuntimeBody),
        Operation("DELETE", runtime, remove_runtime, "runtimes", Removed),
        Operation(
            "GET", "/api/workers", all_workers, "workers", AllWorkers, query=AllWorkersQuery
        ),
        Operation("GET", f"{runtime}/profiles", list_profiles, "runtimes", Profiles),
        Operation(
            "GET", f"{runtime}/diagnostics", runtime_diagnostics, "runtimes", Diagnostics,
            query=DiagnosticsQuery,
        ),
        Operation(
            "GET", "/api/events", all_events, "events",
            query=AllEventsQuery, headers=last_event, stream=SSE_RESPONSE,
        ),
        Operation(
            "GET", f"{runtime}/workers", list_workers, "workers", BrowserWorkerPage,
            query=ListWorkersQuery,
        ),
        Operation(
            "POST", f"{runtime}/workers", create_worker, "workers", WorkerBody, 201,
            body=CreateWorkerRequest, body_required=False,
        ),
        Operation("GET", worker, get_worker, "workers", WorkerBody),
        Operation(
            "POST", f"{worker}/stop", stop_worker, "workers", StopAckBody,
            body=StopRequest, body_required=False,
        ),
        Operation(
            "POST", f"{worker}/cancel", cancel, "workers", CancelAckBody,
            body=CancelRequest, body_required=False,
        ),
        Operation(
            "GET", f"{worker}/transcript", read_transcript, "workers", TranscriptBody,
            query=TranscriptQuery,
        ),
        Operation(
            "GET", f"{worker}/events", worker_events, "events",
            query=WorkerEventsQuery, headers=last_event, stream=SSE_RESPONSE,
        ),
    ]  # fmt: skip
