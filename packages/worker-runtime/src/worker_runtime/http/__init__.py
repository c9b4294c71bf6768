"""The REST command API of a Runtime (``http-server`` extra).

:func:`create_app` serves one :class:`~worker_runtime.Runtime` over HTTP: the commands of SPEC
§6 under ``/v1``, ``/healthz``, and the OpenAPI document at ``/openapi.json``.

Trust boundary: a Runtime's HTTP API is for the Workspace Backend and for operators, never for
browsers. Browsers talk to the Workspace Backend, which talks to Runtimes; a browser never
learns a Runtime's URL or token. Every route but ``/healthz`` needs the bearer token.
"""

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("http-server") from exc

from ._app import DirectRoute, HttpSettings, create_app, install_error_handlers, validate_body
from ._guard import Guard

__all__ = [
    "DirectRoute",
    "Guard",
    "HttpSettings",
    "create_app",
    "install_error_handlers",
    "validate_body",
]
