"""The REST command API of a Runtime, and the serving loop of yoi's processes
(``http-server`` extra).

- :func:`create_app` serves one :class:`~worker_runtime.Runtime` over HTTP: the commands
  of contract §6 under ``/v1``, ``/healthz``, the event stream (contract §7, ``event-stream``
  extra) and the OpenAPI document at ``/openapi.json``. It returns a :class:`RuntimeApp`, a
  typed ASGI app.
- :func:`serve` (async) serves any ASGI app on a bound socket within :class:`ServingLimits`
  until a stop event is set; :func:`run` (sync) owns the event loop and SIGTERM/SIGINT of a
  process. Both ``yoi-runtime`` and ``yoi-workspace-server`` use them, with
  :func:`bind_socket` and :func:`configure_logging`.
- :class:`Operation` and :class:`OperationsApp` build such an app from endpoints and their
  pydantic models (the Workspace Backend's API is one), with :func:`openapi_document`
  generated from the same models; :func:`read_body`, :func:`validate_body`, :func:`validate_query`
  and :func:`json_response` are what an endpoint reads, parses and answers with; the command
  routes' bodies and queries (:class:`StopRequest`, :class:`ListWorkersQuery` …) are the
  Backend's too.
- :class:`Guard` (the bearer token, then the body cap) is the Runtime's layer in front of its
  app; :func:`call_with_capped_body`, :func:`content_length` and :func:`send_error` (the one
  envelope, before any app runs) are its parts other layers reuse, with the ASGI types.
- :class:`HttpSettings` and :class:`ServingLimits` (:mod:`worker_runtime.http.settings`) are
  how the app and its connections are served.

Trust boundary: a Runtime's HTTP API is for the Workspace Backend and for operators, never for
browsers. Browsers talk to the Workspace Backend, which talks to Runtimes; a browser never
learns a Runtime's URL or token. Every route but ``/healthz`` needs the bearer token.
"""

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("http-server") from exc

from ._app import (
    CancelRequest,
    DiagnosticsQuery,
    ListWorkersQuery,
    RuntimeApp,
    StopRequest,
    TranscriptQuery,
    create_app,
)
from ._guard import Guard, call_with_capped_body, content_length, send_error
from ._logs import configure_logging
from ._openapi import (
    ErrorEnvelope,
    Operation,
    OperationsApp,
    json_response,
    openapi_document,
    read_body,
    validate_body,
    validate_query,
)
from ._process import BindError, bind_socket, run
from ._serve import serve
from ._types import ASGIApp, Message, Receive, Scope, Send
from .settings import HttpSettings, ServingLimits

__all__ = [
    "ASGIApp",
    "BindError",
    "CancelRequest",
    "DiagnosticsQuery",
    "ErrorEnvelope",
    "Guard",
    "HttpSettings",
    "ListWorkersQuery",
    "Message",
    "Operation",
    "OperationsApp",
    "Receive",
    "RuntimeApp",
    "Scope",
    "Send",
    "ServingLimits",
    "StopRequest",
    "TranscriptQuery",
    "bind_socket",
    "call_with_capped_body",
    "configure_logging",
    "content_length",
    "create_app",
    "json_response",
    "openapi_document",
    "read_body",
    "run",
    "send_error",
    "serve",
    "validate_body",
    "validate_query",
]
