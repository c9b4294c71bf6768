"""The one error tree of yoi.

Every error a caller can see is a :class:`WorkerRuntimeError`. Each class carries a stable
``code`` (the ``error.code`` of the JSON envelope) and the HTTP ``status`` it maps to. Messages
are written for clients: they never contain a filesystem path, a traceback or a secret.

::

    WorkerRuntimeError                         error                  500
    ├── InvalidInput (ValueError)              invalid_input          400
    │   ├── LimitTooLarge                      limit_too_large        400
    │   ├── WrongRuntime                       wrong_runtime          400
    │   ├── CursorMalformed                    cursor_malformed       400
    │   └── CursorUnknown                      cursor_unknown         400
    ├── Unauthorized (PermissionError)         unauthorized           401
    ├── NotFound (LookupError)                 not_found              404
    │   ├── WorkerNotFound                     worker_not_found       404
    │   ├── RuntimeNotFound                    runtime_not_found      404
    │   └── ProfileNotFound                    profile_not_found      404
    ├── MethodNotAllowed                       method_not_allowed     405
    ├── Conflict                               conflict               409
    │   ├── WorkerBusy                         worker_busy            409
    │   ├── WorkerStopped                      worker_stopped         409
    │   ├── LimitExceeded                      limit_exceeded         409
    │   ├── RuntimeExists                      runtime_exists         409
    │   └── IdempotencyConflict                idempotency_conflict   409
    ├── CursorExpired (LookupError)            cursor_expired         410
    ├── PayloadTooLarge                        payload_too_large      413
    ├── RequestHeadTooLarge                    request_head_too_large 431
    ├── InternalError                          internal_error         500
    │   └── StoreCorrupt                       store_corrupt          500
    ├── MissingExtraError (ImportError)        missing_extra          500
    ├── UnsupportedOperation (NotImplementedError)
    │                                          unsupported_operation  501
    ├── RuntimeUnavailable                     runtime_unavailable    503
    └── ExecutionError                         execution_error        502  (turn failures)
        ├── ProviderError                      provider_error
        ├── ProviderAuthFailed                 provider_auth_failed
        ├── ProviderRateLimited                provider_rate_limited
        ├── ProviderTimeout                    provider_timeout
        └── ProviderUnavailable                provider_unavailable

An :class:`ExecutionError` raised by an execution backend does not reach a command caller: it
ends the turn as ``turn_failed`` with ``{code, message}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "CursorExpired",
    "CursorMalformed",
    "CursorUnknown",
    "ExecutionError",
    "IdempotencyConflict",
    "InternalError",
    "InvalidInput",
    "LimitExceeded",
    "LimitTooLarge",
    "MethodNotAllowed",
    "MissingExtraError",
    "NotFound",
    "PayloadTooLarge",
    "ProfileNotFound",
    "ProviderAuthFailed",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RequestHeadTooLarge",
    "RuntimeExists",
    "RuntimeNotFound",
    "RuntimeUnavailable",
    "StoreCorrupt",
    "Unauthorized",
    "UnsupportedOperation",
    "WorkerBusy",
    "WorkerNotFound",
    "WorkerRuntimeError",
    "WorkerStopped",
    "WrongRuntime",
    "error_class_for_code",
    "error_from_envelope",
    "invalid_input_from",
]


class WorkerRuntimeError(Exception):
    """Root of every yoi error: a stable ``code``, an HTTP ``status`` and client-safe text."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_envelope(self) -> dict[str, Any]:
        """The JSON error envelope: ``{"error": {"code", "message", "details"}}``."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidInput(WorkerRuntimeError, ValueError):
    """A body, query or path value does not validate."""

    code = "invalid_input"
    status = 400


class LimitTooLarge(InvalidInput):
    """A requested limit is above its maximum (never silently clamped)."""

    code = "limit_too_large"


class WrongRuntime(InvalidInput):
    """A WorkerRef names another Runtime."""

    code = "wrong_runtime"


class CursorMalformed(InvalidInput):
    """The string is not a cursor."""

    code = "cursor_malformed"


class CursorUnknown(InvalidInput):
    """The cursor is of another incarnation or Runtime, or beyond the head of the log."""

    code = "cursor_unknown"


class Unauthorized(WorkerRuntimeError, PermissionError):
    """Missing or wrong bearer token."""

    code = "unauthorized"
    status = 401


class NotFound(WorkerRuntimeError, LookupError):
    """No such route or resource."""

    code = "not_found"
    status = 404


class WorkerNotFound(NotFound):
    """No Worker with that id in this Runtime."""

    code = "worker_not_found"


class RuntimeNotFound(NotFound):
    """No Runtime with that id is registered (Workspace Backend)."""

    code = "runtime_not_found"


class ProfileNotFound(NotFound):
    """No profile matches the selector."""

    code = "profile_not_found"


class MethodNotAllowed(WorkerRuntimeError):
    """The route exists but not with this method."""

    code = "method_not_allowed"
    status = 405


class Conflict(WorkerRuntimeError):
    """The command conflicts with the current state."""

    code = "conflict"
    status = 409


class WorkerBusy(Conflict):
    """The Worker is running a turn (or its queue is full); ``details.active_turn_id``."""

    code = "worker_busy"


class WorkerStopped(Conflict):
    """The Worker is stopped and accepts no input."""

    code = "worker_stopped"


class LimitExceeded(Conflict):
    """A Runtime-wide cap is reached (``details.limit`` names it, e.g. ``max_workers``)."""

    code = "limit_exceeded"


class RuntimeExists(Conflict):
    """A Runtime with that id is already registered (Workspace Backend)."""

    code = "runtime_exists"


class IdempotencyConflict(Conflict):
    """The idempotency key was used before with another body."""

    code = "idempotency_conflict"


class CursorExpired(WorkerRuntimeError, LookupError):
    """The cursor is older than the retained backlog (a proven gap)."""

    code = "cursor_expired"
    status = 410


class PayloadTooLarge(WorkerRuntimeError):
    """The request body is over the server's cap."""

    code = "payload_too_large"
    status = 413


class RequestHeadTooLarge(WorkerRuntimeError):
    """The request line and headers are over the server's cap (answered by the serving layer
    before any route runs)."""

    code = "request_head_too_large"
    status = 431


class InternalError(WorkerRuntimeError):
    """An unexpected failure; the message never carries a traceback."""

    code = "internal_error"
    status = 500


class StoreCorrupt(InternalError):
    """The store cannot be opened because its records are corrupt."""

    code = "store_corrupt"


class MissingExtraError(WorkerRuntimeError, ImportError):
    """A part of yoi was used whose optional extra is not installed."""

    code = "missing_extra"
    status = 500

    def __init__(self, extra: str, *, distribution: str = "worker-runtime") -> None:
        self.extra = extra
        self.install_command = f"pip install '{distribution}[{extra}]'"
        super().__init__(
            f"this feature needs the '{extra}' extra; install it with: {self.install_command}",
            details={"extra": extra, "install": self.install_command},
        )


class UnsupportedOperation(WorkerRuntimeError, NotImplementedError):
    """The operation is not offered by this Runtime or source."""

    code = "unsupported_operation"
    status = 501


class RuntimeUnavailable(WorkerRuntimeError):
    """The Runtime is shutting down, its store failed, or the source is unreachable."""

    code = "runtime_unavailable"
    status = 503


class ExecutionError(WorkerRuntimeError):
    """A turn failed in its execution backend; it becomes a ``turn_failed`` event."""

    code = "execution_error"
    status = 502


class ProviderError(ExecutionError):
    """The model provider answered with an error or broke the stream."""

    code = "provider_error"


class ProviderAuthFailed(ExecutionError):
    """The provider rejected the credentials."""

    code = "provider_auth_failed"


class ProviderRateLimited(ExecutionError):
    """The provider is rate limiting; ``details.retry_after_s`` when it said."""

    code = "provider_rate_limited"


class ProviderTimeout(ExecutionError):
    """The provider did not answer in time."""

    code = "provider_timeout"


class ProviderUnavailable(ExecutionError):
    """The provider could not be reached."""

    code = "provider_unavailable"


def _all_subclasses(cls: type[WorkerRuntimeError]) -> list[type[WorkerRuntimeError]]:
    found: list[type[WorkerRuntimeError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


_BY_CODE: dict[str, type[WorkerRuntimeError]] = {
    cls.code: cls for cls in _all_subclasses(WorkerRuntimeError) if cls is not MissingExtraError
}


def error_class_for_code(code: str) -> type[WorkerRuntimeError]:
    """The class of a stable error code; unknown codes map to :class:`WorkerRuntimeError`."""
    return _BY_CODE.get(code, WorkerRuntimeError)


def error_from_envelope(envelope: Mapping[str, Any]) -> WorkerRuntimeError:
    """Rebuild the typed error of a JSON error envelope (used by clients of a Runtime)."""
    body = envelope.get("error")
    if not isinstance(body, Mapping):
        return InternalError("the server answered with an error that is not an envelope")
    code = str(body.get("code", "internal_error"))
    message = str(body.get("message", ""))
    details = body.get("details")
    cls = error_class_for_code(code)
    error = cls(message, details=details if isinstance(details, Mapping) else None)
    if cls is WorkerRuntimeError:
        error.code = code  # type: ignore[misc]
    return error


def invalid_input_from(errors: Sequence[Mapping[str, Any]]) -> InvalidInput:
    """The ``invalid_input`` error for validation failures (pydantic's ``errors()`` shape):
    its message and ``details.field`` name the first failing field; a malformed JSON body says
    so. A leading ``body`` location (FastAPI's) is not part of the field name."""
    first = errors[0] if errors else {}
    kind = str(first.get("type", "invalid"))
    field = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if kind == "json_invalid":
        message = "the request body is not valid JSON"
    else:
        message = f"{field or 'body'}: {first.get('msg', 'invalid value')}"
    return InvalidInput(message, details={"field": field, "reason": kind})
