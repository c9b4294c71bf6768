"""How the Backend's OpenAPI document describes it: the id rule of every ``runtime_id`` and
``worker_id`` path parameter, the error statuses its routes answer with, and
:func:`document`, what ``docs/api/backend-openapi.json`` holds: every route but the event
streams (a valid request to one streams until the server stops)."""

from __future__ import annotations

import copy
from typing import Any

from worker_runtime.http import OperationsApp
from worker_runtime.models import ID_PATTERN

__all__ = ["EMBEDDED_EXAMPLE", "ERROR_STATUSES", "PATH_PARAMS", "document"]

#: The runtime_id every Backend serves (its embedded Runtime): the example of the parameter.
EMBEDDED_EXAMPLE = "backend-internal"

_ID = {"type": "string", "pattern": ID_PATTERN}

#: What the document says of each path parameter beyond its name.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "runtime_id": {"schema": _ID, "example": EMBEDDED_EXAMPLE},
    "worker_id": {"schema": _ID},
}

#: The statuses a Backend route may answer with the error envelope (the trust boundary's
#: 403, 415 and 429 beside the core's).
ERROR_STATUSES = (400, 401, 403, 404, 409, 410, 413, 415, 429, 500, 501, 502, 503)


def document(api: OperationsApp) -> dict[str, Any]:
    """``api``'s OpenAPI document without the event stream routes."""
    doc = copy.deepcopy(api.openapi())
    doc["paths"] = {path: ops for path, ops in doc["paths"].items() if not path.endswith("/events")}
    return doc
