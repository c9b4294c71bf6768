"""The public surface of worker_runtime and what importing it pulls in."""

from __future__ import annotations

import os
import subprocess
import sys

import worker_runtime

EXPECTED = {
    "BUILTIN_PROFILES", "CancelAck", "Conflict", "ContextMessage", "CreateWorkerRequest",
    "CursorExpired", "CursorMalformed", "CursorUnknown", "Diagnostic", "EchoBackend", "Event",
    "EventPage", "EventStream", "ExecutionBackend", "ExecutionError", "IdempotencyConflict",
    "InputAck",
    "InputRequest", "InternalError", "InvalidInput", "LimitTooLarge", "Limits", "MemoryStore",
    "MethodNotAllowed", "MissingExtraError", "NotFound", "PayloadTooLarge", "Profile",
    "ProfileEntry", "ProfileError", "ProfileInfo", "ProfileNotFound", "Profiles",
    "ProviderAuthFailed",
    "ProviderError", "ProviderRateLimited", "ProviderTimeout", "ProviderUnavailable", "Runtime",
    "RuntimeAPI", "RuntimeExists", "RuntimeNotFound",
    "RuntimeStore", "RuntimeSummary", "RuntimeUnavailable", "StopAck", "StoreCorrupt",
    "Subscription", "TextDelta", "TranscriptItem", "TranscriptPage", "TurnRequest", "TurnUsage",
    "Unauthorized", "UnsupportedOperation", "WorkerBusy", "WorkerDetail", "WorkerNotFound",
    "WorkerOverview", "WorkerPage", "WorkerRef", "WorkerRuntimeError", "WorkerStopped",
    "WorkerSummary", "WrongRuntime", "__version__",
}  # fmt: skip


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, without coverage.py's subprocess measurement
    (scripts/test), which imports sqlite3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )


def test_all_is_exactly_the_public_api() -> None:
    """__all__ lists exactly the public names, and each of them exists."""
    assert set(worker_runtime.__all__) == EXPECTED
    assert len(worker_runtime.__all__) == len(EXPECTED)
    for name in worker_runtime.__all__:
        assert hasattr(worker_runtime, name), name


def test_public_names_not_in_all_are_modules_only() -> None:
    """Anything public on the package that is not in __all__ is a submodule."""
    import types

    extra = {
        name
        for name, value in vars(worker_runtime).items()
        if not name.startswith("_") and name not in EXPECTED
    }
    assert all(isinstance(getattr(worker_runtime, n), types.ModuleType) for n in extra), extra


def test_importing_the_core_pulls_in_no_web_or_server_module() -> None:
    """In a fresh interpreter, `import worker_runtime` (and its testing helpers) leaves no web,
    server, HTTP client or store-extra module in sys.modules."""
    forbidden = [
        "starlette", "uvicorn", "httpx", "httpx_sse", "sse_starlette", "h11",
        "aiofiles", "sqlite3", "openai", "anthropic", "llama_cpp",
    ]  # fmt: skip
    code = (
        "import sys, worker_runtime, worker_runtime.testing\n"
        f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = run_fresh(code)
    assert result.stdout.strip() == ""


def test_missing_extra_error_is_raised_when_a_dependency_is_blocked() -> None:
    """With the web framework blocked in sys.modules, importing the HTTP layer raises
    MissingExtraError naming the pip command of its extra, in a fresh interpreter."""
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "from worker_runtime import MissingExtraError\n"
        "try:\n"
        "    import worker_runtime.http\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    result = run_fresh(code)
    assert "pip install 'worker-runtime[http-server]'" in result.stdout


def test_the_fs_store_without_its_extra_names_the_install_command() -> None:
    """Importing the fs store with orjson unavailable raises MissingExtraError naming
    `pip install 'worker-runtime[fs-store]'`, while the core keeps importing."""
    code = (
        "import sys\n"
        "sys.modules['orjson'] = None\n"
        "import worker_runtime\n"
        "try:\n"
        "    import worker_runtime.store.fs\n"
        "except worker_runtime.MissingExtraError as exc:\n"
        "    print(exc.install_command)\n"
    )
    result = run_fresh(code)
    assert result.stdout.strip() == "pip install 'worker-runtime[fs-store]'"
