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
- :class:`HttpSettings` and :class:`ServingLimits` (:mod:`worker_runtime.http.settings`) are
  how the app and its connections are served.

Trust boundary: a Runtime's HTTP API is for the Workspace Backend and for operators, never for
browsers. Browsers talk to the Workspace Backend, which talks to Runtimes; a browser never
learns a Runtime's URL or token. Every route but ``/healthz`` needs the bearer token.
"""

from typing import TYPE_CHECKING, Any

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("http-server") from exc

from ._app import RuntimeApp, create_app, json_response, validate_body, validate_query
from ._guard import Guard
from ._logs import configure_logging
from ._process import BindError, bind_socket, run
from ._serve import serve
from .settings import HttpSettings, ServingLimits

if TYPE_CHECKING:
    from ._fastapi import DirectRoute, install_error_handlers

__all__ = [
    "BindError",
    "DirectRoute",
    "Guard",
    "HttpSettings",
    "RuntimeApp",
    "ServingLimits",
    "bind_socket",
    "configure_logging",
    "create_app",
    "install_error_handlers",
    "json_response",
    "run",
    "serve",
    "validate_body",
    "validate_query",
]


def __getattr__(name: str) -> Any:
    """The FastAPI helpers are imported on first use: the Runtime's own app is plain Starlette,
    so ``yoi-runtime`` starts without importing FastAPI (about half a second)."""
    if name in ("DirectRoute", "install_error_handlers"):
        try:
            from . import _fastapi
        except ImportError as exc:  # pragma: no cover - the extra names FastAPI
            from ..errors import MissingExtraError

            raise MissingExtraError("http-server") from exc
        return getattr(_fastapi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
