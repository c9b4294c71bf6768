"""The REST app's operations and the OpenAPI document generated from them.

Each route is an :class:`Operation`: its method and path, its endpoint, and the pydantic
models of its body, query and response. The app serves the endpoints as Starlette routes, and
:func:`openapi_document` describes the same operations from the same models, so the document
cannot drift from what is validated and sent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["ERROR_STATUSES", "Operation", "openapi_document"]

#: The statuses an operation may answer with the error envelope.
ERROR_STATUSES = (400, 401, 404, 409, 410, 413, 500, 501, 503)

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)}")


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


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
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


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    doc = (op.endpoint.__doc__ or "").strip()
    entry: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary or _title(op.name),
        "operationId": op.name,
    }
    if doc:
        entry["description"] = " ".join(doc.split())
    params = _parameters(op, schemas)
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
            "description": HTTPStatus(op.status).phrase,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.response.__name__)}}
            },
        }
    for status in ERROR_STATUSES:
        if op.path == "/healthz" and status != 500:
            continue  # the open liveness route answers 200 or fails
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
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
    error_model: type[BaseModel],
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``: their paths, parameters, bodies and
    responses, with every model under ``components/schemas``."""
    models: dict[str, tuple[type[BaseModel], Any]] = {
        error_model.__name__: (error_model, "serialization")
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
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
    queries = {op.query.__name__ for op in operations if op.query is not None}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "description": description, "version": version},
        "paths": paths,
        "components": {"schemas": {k: v for k, v in schemas.items() if k not in queries}},
    }
