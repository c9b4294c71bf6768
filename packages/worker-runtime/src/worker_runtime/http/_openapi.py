"""Operations, the app that serves them, and the OpenAPI document generated from them.

Each route is an :class:`Operation`: its method and path, its endpoint, and the pydantic
models of its body, query and response. :class:`OperationsApp` serves the endpoints as
Starlette routes in a Starlette app whose exception handlers answer with the one error
envelope, and :func:`openapi_document` describes the same operations from the same models, so
the document cannot drift from what is validated and sent. The Runtime's REST app and the
Workspace Backend's API are both built this way.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import (
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    WorkerRuntimeError,
    invalid_input_from,
)
from ._types import Receive, Scope, Send

__all__ = [
    "ERROR_STATUSES",
    "ErrorEnvelope",
    "Operation",
    "OperationsApp",
    "json_response",
    "openapi_document",
    "read_body",
    "validate_body",
    "validate_query",
]

log = logging.getLogger("worker_runtime.http")

#: The statuses an operation may answer with the error envelope.
ERROR_STATUSES = (400, 401, 404, 409, 410, 413, 500, 501, 503)

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)}")

#: RFC 9110's names for the statuses Python 3.13 renamed: the document must not depend on the
#: interpreter that generates it.
_RFC9110_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def _phrase(status: int) -> str:
    """A status's reason phrase, as RFC 9110 names it."""
    return _RFC9110_PHRASES.get(status) or HTTPStatus(status).phrase


M = TypeVar("M", bound=BaseModel)


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON response: pydantic's own JSON bytes, serialized once."""
    return Response(
        model.__pydantic_serializer__.to_json(model), status_code, media_type="application/json"
    )


def validate_body(model: type[M], raw: bytes, *, optional: bool = False) -> M:
    """Validate a JSON body with pydantic's JSON validator, straight from the raw bytes;
    failures are ``invalid_input`` naming the field. An empty optional body is ``{}``."""
    if optional and not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_input_from(exc.errors()) from None


async def read_body(request: Request) -> bytes:
    """The request body: the layer in front (the :class:`Guard`, or any that reads through
    :func:`~._guard.call_with_capped_body`) has read it whole, under its cap, and hands it to
    the app as one message (one receive, where ``request.body()`` streams it)."""
    message = await request.receive()
    body: bytes = message.get("body", b"")
    return body


def validate_query(model: type[M], params: Mapping[str, str]) -> M:
    """Validate a query string with ``model``; failures are ``invalid_input`` naming the
    parameter (``query.<name>``)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        raise invalid_input_from(errors) from None


@dataclass(frozen=True)
class Operation:
    """One route: ``endpoint`` answers ``method path``; the models describe it."""

    method: str
    path: str
    endpoint: Callable[[Request], Awaitable[Response]]
    tag: str
    response: type[BaseModel] | None = None
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    #: Header parameters: (name, JSON schema).
    headers: Sequence[tuple[str, dict[str, Any]]] = ()
    #: The 200 response of a route that streams (instead of ``response``).
    stream: dict[str, Any] | None = None
    summary: str = field(default="")

    @property
    def name(self) -> str:
        return self.endpoint.__name__

    def route(self) -> Route:
        return Route(self.path, self.endpoint, methods=[self.method], name=self.name)


def _title(name: str) -> str:
    return " ".join(part.capitalize() for part in name.split("_"))


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(BaseModel):
    """The one error envelope every error answers with."""

    error: ErrorBody


def _parameters(
    op: Operation, schemas: dict[str, Any], path_params: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            **path_params.get(name, {}),
        }
        for name in _PATH_PARAM.findall(op.path)
    ]
    if op.query is not None:
        schema = schemas[op.query.__name__]
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
            entry: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in schema["properties"][name]:
                entry["description"] = schema["properties"][name]["description"]
            params.append({**entry, "schema": prop})
    for name, header_schema in op.headers:
        params.append({"name": name, "in": "header", "required": False, "schema": header_schema})
    return params


def _operation(
    op: Operation,
    schemas: dict[str, Any],
    path_params: Mapping[str, Mapping[str, Any]],
    error_statuses: Sequence[int],
) -> dict[str, Any]:
    doc = (op.endpoint.__doc__ or "").strip()
    entry: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary or _title(op.name),
        "operationId": op.name,
    }
    if doc:
        entry["description"] = " ".join(doc.split())
    params = _parameters(op, schemas, path_params)
    if params:
        entry["parameters"] = params
    if op.body is not None:
        entry["requestBody"] = {
            "required": op.body_required,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
            },
        }
    responses: dict[str, Any] = {}
    if op.stream is not None:
        responses[str(op.status)] = op.stream
    elif op.response is not None:
        responses[str(op.status)] = {
            "description": _phrase(op.status),
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.response.__name__)}}
            },
        }
    for status in error_statuses:
        if op.path == "/healthz" and status != 500:
            continue  # the open liveness route answers 200 or fails
        responses[str(status)] = {
            "description": _phrase(status),
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model="ErrorEnvelope")}}
            },
        }
    entry["responses"] = responses
    return entry


def openapi_document(
    operations: Sequence[Operation],
    *,
    title: str,
    version: str,
    description: str,
    error_statuses: Sequence[int] = ERROR_STATUSES,
    path_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``: their paths, parameters, bodies and
    responses (``error_statuses`` with the :class:`ErrorEnvelope`), with every model under
    ``components/schemas``. ``path_params`` adds to a path parameter's entry by name (its
    schema, an example)."""
    models: dict[str, tuple[type[BaseModel], Any]] = {
        ErrorEnvelope.__name__: (ErrorEnvelope, "serialization")
    }
    for op in operations:
        if op.body is not None:
            models[op.body.__name__] = (op.body, "validation")
        if op.query is not None:
            models[op.query.__name__] = (op.query, "validation")
        if op.response is not None:
            models[op.response.__name__] = (op.response, "serialization")
    _, top = models_json_schema(list(models.values()), ref_template=_REF)
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry = _operation(op, schemas, path_params or {}, error_statuses)
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    queries = {op.query.__name__ for op in operations if op.query is not None}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "description": description, "version": version},
        "paths": paths,
        "components": {"schemas": {k: v for k, v in schemas.items() if k not in queries}},
    }


class OperationsApp:
    """An ASGI app serving ``operations`` as Starlette routes (in order: put the hot route
    first), behind ``middleware``, with ``/openapi.json``. Every error answers with the one
    envelope: a :class:`~worker_runtime.WorkerRuntimeError` with its code, an unknown route
    ``not_found``, a wrong method ``method_not_allowed``, anything unexpected
    ``internal_error`` (logged, never shown). No slash redirects: their ``Location`` is built
    from the client's ``Host`` header. ``openapi()`` is the document, built once."""

    def __init__(
        self,
        operations: Sequence[Operation],
        *,
        title: str,
        version: str,
        description: str,
        middleware: Sequence[Middleware] = (),
        error_statuses: Sequence[int] = ERROR_STATUSES,
        path_params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.operations = tuple(operations)
        self._describe = functools.partial(
            openapi_document,
            self.operations,
            title=title,
            version=version,
            description=description,
            error_statuses=error_statuses,
            path_params=path_params,
        )
        self._document: dict[str, Any] | None = None
        self._served: bytes | None = None

        async def openapi(request: Request) -> Response:
            if self._served is None:
                self._served = json.dumps(self.openapi(), separators=(",", ":")).encode()
            return Response(self._served, media_type="application/json")

        self.app = Starlette(
            routes=[*(op.route() for op in self.operations), Route("/openapi.json", openapi)],
            middleware=middleware,
            exception_handlers={
                WorkerRuntimeError: _runtime_error,
                HTTPException: _http_error,
                Exception: _unexpected,
            },
        )
        self.app.router.redirect_slashes = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of the served operations (built once)."""
        if self._document is None:
            self._document = self._describe()
        return self._document


def _envelope(error: WorkerRuntimeError) -> Response:
    return JSONResponse(error.to_envelope(), error.status)


async def _runtime_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, WorkerRuntimeError):  # pragma: no cover - registered for it only
        return await _unexpected(request, exc)
    return _envelope(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route, wrong method) in the one envelope."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error: WorkerRuntimeError
    if status == 404:
        error = NotFound("no such route")
    elif status == 405:
        error = MethodNotAllowed("this route does not take that method")
    elif status < 500:
        error = InvalidInput("the request is not valid")
    else:
        error = InternalError("the server failed to answer")
    return _envelope(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error while serving a request", exc_info=exc)
    return _envelope(InternalError("the server failed to answer"))
