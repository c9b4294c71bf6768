"""The REST app: thin handlers over the Runtime's public API (SPEC §6).

Each handler parses the request, calls one public :class:`~worker_runtime.Runtime` method and
serializes its result. Worker semantics live in the Runtime, never here.

Browsers must never call a Runtime: they go through the Workspace Backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    InputAck,
    InputRequest,
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    MissingExtraError,
    NotFound,
    ProfileEntry,
    Runtime,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerRuntimeError,
    WorkerSummary,
    __version__,
)
from ..errors import invalid_input_from
from ._guard import Guard

__all__ = ["DirectRoute", "HttpSettings", "create_app", "install_error_handlers", "validate_body"]

log = logging.getLogger("worker_runtime.http")


@dataclass(frozen=True)
class HttpSettings:
    """How the REST app is served. ``token`` is required on every route but ``/healthz``.

    ``event_stream``: mount the SSE routes (SPEC §7) — ``None`` mounts them when the
    ``event-stream`` extra is installed, ``True`` requires it, ``False`` leaves them out.
    ``heartbeat_s`` is the idle heartbeat interval, ``max_streams`` the cap on open streams
    (503 above it), ``retry_ms`` the reconnect hint sent at the start of each stream.
    """

    token: str
    max_body_bytes: int = 1024 * 1024
    event_stream: bool | None = None
    heartbeat_s: float = 15.0
    max_streams: int = 1024
    retry_ms: int = 2000

    def __post_init__(self) -> None:
        if not self.token or not self.token.strip():
            raise InvalidInput("the bearer token must not be empty")
        if self.max_body_bytes < 1:
            raise InvalidInput("max_body_bytes must be >= 1")
        if not self.heartbeat_s > 0:
            raise InvalidInput("heartbeat_s must be > 0")
        if self.max_streams < 1:
            raise InvalidInput("max_streams must be >= 1")
        if self.retry_ms < 0:
            raise InvalidInput("retry_ms must be >= 0")

    def __repr__(self) -> str:
        return (
            f"HttpSettings(token='***', max_body_bytes={self.max_body_bytes}, "
            f"event_stream={self.event_stream}, heartbeat_s={self.heartbeat_s}, "
            f"max_streams={self.max_streams}, retry_ms={self.retry_ms})"
        )


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StopRequest(_Body):
    reason: Annotated[str, Field(max_length=1000)] | None = None


class CancelRequest(_Body):
    turn_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(BaseModel):
    error: ErrorBody


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


def _json(model: BaseModel, status_code: int = 200) -> Response:
    """The model as a JSON response. FastAPI passes a Response through as is, so the payload
    is serialized once, by pydantic, instead of being validated again against
    ``response_model`` (which stays declared for the OpenAPI document)."""
    return Response(model.model_dump_json(), status_code, media_type="application/json")


M = TypeVar("M", bound=BaseModel)


def _json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """OpenAPI for a JSON request body that the handler validates itself."""
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def validate_body(model: type[M], raw: bytes, *, optional: bool = False) -> M:
    """Validate a JSON body with pydantic's JSON validator (a fraction of the cost of
    FastAPI's generic body handling); failures are ``invalid_input`` naming the field. An
    empty optional body is ``{}``."""
    if optional and not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_input_from(exc.errors()) from None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 404, 409, 410, 413, 500, 501, 503)
}


class DirectRoute(APIRoute):
    """An APIRoute that calls its endpoint directly when the endpoint takes nothing but path
    parameters (all ``str``) and the :class:`Request`: that skips FastAPI's per-request
    dependency solving, which is most of the cost of a small command. Routes with query
    parameters keep FastAPI's handler, and the OpenAPI document is the same either way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        direct = not (
            dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
            or any(field.field_info.annotation is not str for field in dependant.path_params)
        )
        if not direct:
            return super().get_route_handler()
        endpoint = self.endpoint
        names = tuple(field.name for field in dependant.path_params)
        request_name = dependant.request_param_name

        async def handler(request: Request) -> Response:
            kwargs: dict[str, Any] = {name: request.path_params[name] for name in names}
            if request_name is not None:
                kwargs[request_name] = request
            response: Response = await endpoint(**kwargs)
            return response

        return handler


def create_app(runtime: Runtime, settings: HttpSettings) -> Any:
    """An ASGI app serving ``runtime``'s REST command API, guarded by ``settings.token``.

    The caller owns the Runtime (``async with runtime``) and serves the app on the same event
    loop. The app never serves browsers: put the Workspace Backend in front of it.
    """
    app = FastAPI(
        title="yoi Runtime",
        version=__version__,
        description=(
            "REST command API of one yoi Runtime. For the Workspace Backend and operators "
            "only: browsers must never call a Runtime."
        ),
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS,
        # No OpenTelemetry instrumentation: its per-request check costs more than a command.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = DirectRoute
    install_error_handlers(app)

    # The hot route first: Starlette matches routes in order.
    @app.post(
        "/v1/workers/{worker_id}/input",
        response_model=InputAckResponse,
        tags=["workers"],
        openapi_extra=_json_body(InputRequest),
    )
    async def send_input(worker_id: str, request: Request) -> Response:
        body = validate_body(InputRequest, await request.body())
        ref = runtime.ref(worker_id)
        return _json(InputAckResponse(ack=await runtime.send_input(ref, body)))

    @app.get("/healthz", response_model=HealthResponse, tags=["health"])
    async def healthz() -> Response:
        """Liveness; the only route that needs no token."""
        return _json(HealthResponse(status="ok"))

    @app.get("/v1/runtime", response_model=RuntimeResponse, tags=["runtime"])
    async def get_runtime() -> Response:
        return _json(RuntimeResponse(runtime=await runtime.summary()))

    @app.get("/v1/workers", response_model=WorkersResponse, tags=["workers"])
    async def list_workers(
        status: Annotated[Literal["idle", "running", "stopped"] | None, Query()] = None,
        limit: Annotated[int | None, Query(ge=1)] = None,
        after: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        page = await runtime.list_workers(status=status, limit=limit, after=after)
        return _json(WorkersResponse(workers=page.workers, next_after=page.next_after))

    @app.post(
        "/v1/workers",
        status_code=201,
        response_model=WorkerResponse,
        tags=["workers"],
        openapi_extra=_json_body(CreateWorkerRequest, required=False),
    )
    async def create_worker(request: Request) -> Response:
        body = validate_body(CreateWorkerRequest, await request.body(), optional=True)
        return _json(WorkerResponse(worker=await runtime.create_worker(body)), 201)

    @app.get("/v1/workers/{worker_id}", response_model=WorkerResponse, tags=["workers"])
    async def get_worker(worker_id: str) -> Response:
        return _json(WorkerResponse(worker=await runtime.get_worker(runtime.ref(worker_id))))

    @app.post(
        "/v1/workers/{worker_id}/stop",
        response_model=StopAckResponse,
        tags=["workers"],
        openapi_extra=_json_body(StopRequest, required=False),
    )
    async def stop_worker(worker_id: str, request: Request) -> Response:
        body = validate_body(StopRequest, await request.body(), optional=True)
        ref = runtime.ref(worker_id)
        return _json(StopAckResponse(ack=await runtime.stop_worker(ref, reason=body.reason)))

    @app.post(
        "/v1/workers/{worker_id}/cancel",
        response_model=CancelAckResponse,
        tags=["workers"],
        openapi_extra=_json_body(CancelRequest, required=False),
    )
    async def cancel(worker_id: str, request: Request) -> Response:
        body = validate_body(CancelRequest, await request.body(), optional=True)
        ref = runtime.ref(worker_id)
        ack = await runtime.cancel(ref, turn_id=body.turn_id, reason=body.reason)
        return _json(CancelAckResponse(ack=ack))

    @app.get(
        "/v1/workers/{worker_id}/transcript", response_model=TranscriptResponse, tags=["workers"]
    )
    async def read_transcript(
        worker_id: str,
        start: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1)] = None,
    ) -> Response:
        ref = runtime.ref(worker_id)
        page = await runtime.read_transcript(ref, start=start, limit=limit)
        return _json(TranscriptResponse(transcript=page))

    @app.get("/v1/profiles", response_model=ProfilesResponse, tags=["runtime"])
    async def list_profiles() -> Response:
        """The profiles a Worker may be created on (name, kind, provider, model, whether it
        is the default); never a credential."""
        return _json(ProfilesResponse(profiles=await runtime.list_profiles()))

    @app.get("/v1/diagnostics", response_model=DiagnosticsResponse, tags=["runtime"])
    async def diagnostics(limit: Annotated[int | None, Query(ge=1)] = None) -> Response:
        return _json(DiagnosticsResponse(diagnostics=await runtime.diagnostics(limit)))

    if settings.event_stream is not False:
        _mount_event_stream(app, runtime, settings)
    return Guard(app, token=settings.token, max_body_bytes=settings.max_body_bytes)


def _mount_event_stream(app: FastAPI, runtime: Runtime, settings: HttpSettings) -> None:
    try:
        from .stream import stream_router
    except MissingExtraError:
        if settings.event_stream:
            raise
        log.info("event stream not served: the event-stream extra is not installed")
        return
    app.include_router(stream_router(runtime, settings))


def _envelope(error: WorkerRuntimeError) -> JSONResponse:
    return JSONResponse(error.to_envelope(), status_code=error.status)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with the one envelope: typed errors with their code,
    validation failures as ``invalid_input``, unknown routes and methods, and anything
    unexpected as ``internal_error`` (logged, never shown)."""

    @app.exception_handler(WorkerRuntimeError)
    async def runtime_error(request: Request, exc: WorkerRuntimeError) -> JSONResponse:
        return _envelope(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _envelope(invalid_input_from(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: WorkerRuntimeError
        if exc.status_code == 404:
            error = NotFound("no such route")
        elif exc.status_code == 405:
            error = MethodNotAllowed("this route does not take that method")
        elif exc.status_code < 500:
            error = InvalidInput("the request is not valid")
        else:
            error = InternalError("the server failed to answer")
        return _envelope(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return _envelope(InternalError("the server failed to answer"))
