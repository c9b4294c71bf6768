"""The Backend's JSON responses as typed models. Every cursor in them is a
:data:`~.cursors.BackendCursor` (see :mod:`.cursors`); the JSON is the models' fields in
order, compact, UTF-8 (a lone surrogate a remote sent becomes U+FFFD)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel
from starlette.responses import Response

from worker_runtime import Diagnostic, ProfileEntry

from ._stream import utf8
from .cursors import (
    BrowserCancelAck,
    BrowserInputAck,
    BrowserStopAck,
    BrowserTranscriptPage,
    BrowserWorkerDetail,
    BrowserWorkerSummary,
)
from .sources import RuntimeInfo

__all__ = [
    "AllWorkers",
    "CancelAckBody",
    "Health",
    "InputAckBody",
    "Profiles",
    "Removed",
    "RuntimeBody",
    "Runtimes",
    "StopAckBody",
    "TranscriptBody",
    "UnavailableRow",
    "WorkerBody",
    "json_response",
]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Runtimes(BaseModel):
    runtimes: list[RuntimeInfo]


class RuntimeBody(BaseModel):
    runtime: RuntimeInfo


class Removed(BaseModel):
    removed: str


class Profiles(BaseModel):
    profiles: list[ProfileEntry]


class Diagnostics(BaseModel):
    diagnostics: list[Diagnostic]


class UnavailableRow(BaseModel):
    """A source whose Workers ``GET /api/workers`` could not list."""

    runtime_id: str
    severity: Literal["error"] = "error"
    code: Literal["runtime_unavailable"] = "runtime_unavailable"
    reason: str
    message: str = "this runtime is unavailable; its Workers are not listed"


class AllWorkers(BaseModel):
    workers: list[BrowserWorkerSummary]
    diagnostics: list[UnavailableRow]


class WorkerBody(BaseModel):
    worker: BrowserWorkerDetail


class InputAckBody(BaseModel):
    ack: BrowserInputAck


class StopAckBody(BaseModel):
    ack: BrowserStopAck


class CancelAckBody(BaseModel):
    ack: BrowserCancelAck


class TranscriptBody(BaseModel):
    transcript: BrowserTranscriptPage


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """``body`` as a JSON response."""
    text = json.dumps(body.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
    return Response(utf8(text), status_code, media_type="application/json")
