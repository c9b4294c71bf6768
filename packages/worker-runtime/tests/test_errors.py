"""The error tree: stable codes, statuses and the envelope."""

from __future__ import annotations

import pytest

import worker_runtime
from worker_runtime import errors
from worker_runtime.errors import error_class_for_code, error_from_envelope

CONTRACT_TABLE = {
    "unauthorized": 401,
    "invalid_input": 400,
    "limit_too_large": 400,
    "payload_too_large": 413,
    "wrong_runtime": 400,
    "worker_not_found": 404,
    "profile_not_found": 404,
    "worker_busy": 409,
    "worker_stopped": 409,
    "idempotency_conflict": 409,
    "cursor_malformed": 400,
    "cursor_unknown": 400,
    "cursor_expired": 410,
    "unsupported_operation": 501,
    "runtime_unavailable": 503,
    "store_corrupt": 500,
    "internal_error": 500,
    "not_found": 404,
    "method_not_allowed": 405,
}


@pytest.mark.parametrize(("code", "status"), sorted(CONTRACT_TABLE.items()))
def test_every_spec_code_has_one_class_with_its_status(code: str, status: int) -> None:
    """Each error code of the contract's table maps to a class with that HTTP status."""
    cls = error_class_for_code(code)
    assert cls.code == code
    assert cls.status == status
    assert issubclass(cls, worker_runtime.WorkerRuntimeError)


def test_codes_are_unique_across_the_tree() -> None:
    """No two error classes share a code."""
    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.WorkerRuntimeError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))


def test_envelope_round_trips_to_the_same_class() -> None:
    """An error's envelope rebuilds into the same class, message and details."""
    error = worker_runtime.WorkerBusy("busy", details={"active_turn_id": "t1"})
    assert error.to_envelope() == {
        "error": {"code": "worker_busy", "message": "busy", "details": {"active_turn_id": "t1"}}
    }
    rebuilt = error_from_envelope(error.to_envelope())
    assert type(rebuilt) is worker_runtime.WorkerBusy
    assert rebuilt.details == {"active_turn_id": "t1"}
    unknown = error_from_envelope({"error": {"code": "brand_new", "message": "m"}})
    assert unknown.code == "brand_new"
    assert isinstance(error_from_envelope({"nope": 1}), worker_runtime.InternalError)


def test_errors_subclass_the_matching_builtins() -> None:
    """Errors subclass the builtin whose meaning matches, so plain except clauses work."""
    assert issubclass(worker_runtime.InvalidInput, ValueError)
    assert issubclass(worker_runtime.WorkerNotFound, LookupError)
    assert issubclass(worker_runtime.UnsupportedOperation, NotImplementedError)
    assert issubclass(worker_runtime.MissingExtraError, ImportError)


def test_missing_extra_error_names_the_pip_command() -> None:
    """MissingExtraError's message names the exact pip install command of the extra."""
    error = worker_runtime.MissingExtraError("http-server")
    assert "pip install 'worker-runtime[http-server]'" in str(error)
    assert error.details["install"] == "pip install 'worker-runtime[http-server]'"
