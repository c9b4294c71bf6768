"""The REST app: thin handlers over the Runtime's public API (contract §6), as Starlette routes.

Each handler parses the request, calls one public :class:`~worker_runtime.Runtime` method and
serializes its result. Worker semantics live in the Runtime, never here. Bodies are validated by
pydantic's JSON validator straight from the raw bytes, query strings by a pydantic model, and
responses are the models' own JSON bytes; the OpenAPI document is generated from the same
models (:mod:`._openapi`).

Browsers must never call a Runtime: they go through the Workspace Backend.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from .. import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    InputAck,
    InputRequest,
    MissingExtraError,
    ProfileEntry,
    Runtime,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerSummary,
    __version__,
)
from ._guard import Guard
from ._openapi import (
    ErrorEnvelope,
    Operation,
    OperationsApp,
    json_response,
    read_body,
    validate_body,
    validate_query,
)
from .settings import HttpSettings

__all__ = [
    "ErrorEnvelope",
    "RuntimeApp",
    "create_app",
    "json_response",
    "validate_body",
    "validate_query",
]

log = logging.getLogger("worker_runtime.http")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StopRequest(_Body):
    reason: Annotated[str, Field(max_length=1000)] | None = None


class CancelRequest(_Body):
    turn_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None


class ListWorkersQuery(BaseModel):
    status: Literal["idle", "running", "stopped"] | None = None
    limit: Annotated[int, Field(ge=1)] | None = None
    after: Annotated[str, Field(max_length=200)] | None = None


class TranscriptQuery(BaseModel):
    start: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1)] | None = None


class DiagnosticsQuery(BaseModel):
    limit: Annotated[int, Field(ge=1)] | None = None


class HealthResponse(BaseModel):
    status: str


class RuntimeResponse(BaseModel):
    runtime: RuntimeSummary


class WorkersResponse(BaseModel):
    workers: list[WorkerSummary]
    next_after: str | None


class WorkerResponse(BaseModel):
    worker: WorkerDetail


class InputAckResponse(BaseModel):
    ack: InputAck


class StopAckResponse(BaseModel):
    ack: StopAck


class CancelAckResponse(BaseModel):
    ack: CancelAck


class TranscriptResponse(BaseModel):
    transcript: TranscriptPage


class ProfilesResponse(BaseModel):
    profiles: list[ProfileEntry]


class DiagnosticsResponse(BaseModel):
    diagnostics: list[Diagnostic]


def _operations(runtime: Runtime) -> list[Operation]:
    """The command routes over ``runtime`` (the hot route first: routes match in order)."""

    async def send_input(request: Request) -> Response:
        body = validate_body(InputRequest, await read_body(request))
        ack = await runtime.send_input(runtime.ref(request.path_params["worker_id"]), body)
        return json_response(InputAckResponse(ack=ack))

    async def healthz(request: Request) -> Response:
        """Liveness; the only route that needs no token."""
        return json_response(HealthResponse(status="ok"))

    async def get_runtime(request: Request) -> Response:
        return json_response(RuntimeResponse(runtime=await runtime.summary()))

    async def list_workers(request: Request) -> Response:
        query = validate_query(ListWorkersQuery, request.query_params)
        page = await runtime.list_workers(status=query.status, limit=query.limit, after=query.after)
        return json_response(WorkersResponse(workers=page.workers, next_after=page.next_after))

    async def create_worker(request: Request) -> Response:
        body = validate_body(CreateWorkerRequest, await read_body(request), optional=True)
        return json_response(WorkerResponse(worker=await runtime.create_worker(body)), 201)

    async def get_worker(request: Request) -> Response:
        ref = runtime.ref(request.path_params["worker_id"])
        return json_response(WorkerResponse(worker=await runtime.get_worker(ref)))

    async def stop_worker(request: Request) -> Response:
        body = validate_body(StopRequest, await read_body(request), optional=True)
        ref = runtime.ref(request.path_params["worker_id"])
        return json_response(
            StopAckResponse(ack=await runtime.stop_worker(ref, reason=body.reason))
        )

    async def cancel(request: Request) -> Response:
        body = validate_body(CancelRequest, await read_body(request), optional=True)
        ref = runtime.ref(request.path_params["worker_id"])
        ack = await runtime.cancel(ref, turn_id=body.turn_id, reason=body.reason)
        return json_response(CancelAckResponse(ack=ack))

    async def read_transcript(request: Request) -> Response:
        query = validate_query(TranscriptQuery, request.query_params)
        ref = runtime.ref(request.path_params["worker_id"])
        page = await runtime.read_transcript(ref, start=query.start, limit=query.limit)
        return json_response(TranscriptResponse(transcript=page))

    async def list_profiles(request: Request) -> Response:
        """The profiles a Worker may be created on (name, kind, provider, model, whether it
        is the default); never a credential."""
        return json_response(ProfilesResponse(profiles=await runtime.list_profiles()))

    async def diagnostics(request: Request) -> Response:
        query = validate_query(DiagnosticsQuery, request.query_params)
        return json_response(
            DiagnosticsResponse(diagnostics=await runtime.diagnostics(query.limit))
        )

    worker = "/v1/workers/{worker_id}"
    return [
        Operation(
            "POST", f"{worker}/input", send_input, "workers", InputAckResponse, body=InputRequest
        ),
        Operation("GET", "/healthz", healthz, "health", HealthResponse),
        Operation("GET", "/v1/runtime", get_runtime, "runtime", RuntimeResponse),
        Operation(
            "GET", "/v1/workers", list_workers, "workers", WorkersResponse, query=ListWorkersQuery
        ),
        Operation(
            "POST", "/v1/workers", create_worker, "workers", WorkerResponse, 201,
            body=CreateWorkerRequest, body_required=False,
        ),
        Operation("GET", worker, get_worker, "workers", WorkerResponse),
        Operation(
            "POST", f"{worker}/stop", stop_worker, "workers", StopAckResponse,
            body=StopRequest, body_required=False,
        ),
        Operation(
            "POST", f"{worker}/cancel", cancel, "workers", CancelAckResponse,
            body=CancelRequest, body_required=False,
        ),
        Operation(
            "GET", f"{worker}/transcript", read_transcript, "workers", TranscriptResponse,
            query=TranscriptQuery,
        ),
        Operation("GET", "/v1/profiles", list_profiles, "runtime", ProfilesResponse),
        Operation(
            "GET", "/v1/diagnostics", diagnostics, "runtime", DiagnosticsResponse,
            query=DiagnosticsQuery,
        ),
    ]  # fmt: skip


class RuntimeApp(OperationsApp):
    """The ASGI app of one Runtime's REST API (see :func:`create_app`): its operations served
    behind the :class:`Guard`. ``openapi()`` is its OpenAPI document, served at
    ``/openapi.json``."""

    def __init__(self, runtime: Runtime, settings: HttpSettings) -> None:
        operations = _operations(runtime)
        if settings.event_stream is not False:
            operations += _event_stream(runtime, settings)
        super().__init__(
            operations,
            title="yoi Runtime",
            version=__version__,
            description=(
                "REST command API of one yoi Runtime. For the Workspace Backend and "
                "operators only: browsers must never call a Runtime."
            ),
            middleware=[
                Middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes)
            ],
        )


def create_app(runtime: Runtime, settings: HttpSettings) -> RuntimeApp:
    """An ASGI app serving ``runtime``'s REST command API, guarded by ``settings.token``.

    The caller owns the Runtime (``async with runtime``) and serves the app on the same event
    loop (:func:`worker_runtime.http.serve`). The app never serves browsers: put the
    Workspace Backend in front of it.
    """
    return RuntimeApp(runtime, settings)


def _event_stream(runtime: Runtime, settings: HttpSettings) -> list[Operation]:
    try:
        from .stream import stream_operations
    except MissingExtraError:
        if settings.event_stream:
            raise
        log.info("event stream not served: the event-stream extra is not installed")
        return []
    return stream_operations(runtime, settings)
