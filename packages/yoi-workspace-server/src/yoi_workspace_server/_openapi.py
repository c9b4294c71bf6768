"""The Backend's OpenAPI document: the JSON bodies its handlers validate themselves are
declared (so a fuzzer and a reader see them), and :func:`document` is what
``docs/api/backend-openapi.json`` holds: every route but the event streams (a valid request
to one streams until the server stops)."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from worker_runtime.models import ID_PATTERN

__all__ = ["EMBEDDED_EXAMPLE", "body", "describe", "document"]

#: The runtime_id every Backend serves (its embedded Runtime): the example of the parameter.
EMBEDDED_EXAMPLE = "backend-internal"


def body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a JSON request body of ``model`` that the handler validates."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def describe(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    """Add the schemas of ``models`` (and the models they use) to ``app``'s document, and
    the id rule to every ``runtime_id`` and ``worker_id`` path parameter."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas.setdefault(model.__name__, schema)
        doc["components"]["schemas"] = dict(sorted(schemas.items()))
        for operations in doc["paths"].values():
            for operation in operations.values():
                for param in operation.get("parameters", []):
                    if param.get("in") == "path" and param["name"] in ("runtime_id", "worker_id"):
                        param["schema"] = {"type": "string", "pattern": ID_PATTERN}
                        if param["name"] == "runtime_id":
                            param["example"] = EMBEDDED_EXAMPLE
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI document without the event stream routes."""
    doc = copy.deepcopy(app.openapi())
    doc["paths"] = {path: ops for path, ops in doc["paths"].items() if not path.endswith("/events")}
    return doc
