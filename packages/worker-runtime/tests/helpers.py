"""Shared helpers of the worker-runtime tests (public API only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from worker_runtime import (
    ExecutionBackend,
    Limits,
    Profile,
    Profiles,
    Runtime,
    RuntimeStore,
    WorkerDetail,
)
from worker_runtime.testing import ScriptedBackend

#: What ``open_runtime`` returns: a context manager holding a started Runtime.
RuntimeContext = AbstractAsyncContextManager[Runtime]
#: ``open_runtime`` with its store already chosen (the conftest's ``open_runtime`` fixture).
OpenRuntime = Callable[..., RuntimeContext]

SCRIPTED = Profile(name="scripted", provider="scripted", model="script-1")
SLOW_ECHO = Profile(name="slow-echo", provider="echo", chunk_delay_ms=20)


@asynccontextmanager
async def open_runtime(
    *,
    runtime_id: str = "rt-test",
    scripted: ScriptedBackend | None = None,
    limits: Limits | None = None,
    profiles: list[Profile] | None = None,
    default: str | None = None,
    backends: Mapping[str, ExecutionBackend] | None = None,
    store: RuntimeStore | None = None,
) -> AsyncIterator[Runtime]:
    """A started Runtime with the scripted and slow-echo profiles, on ``store`` (None: memory)."""
    named = [SCRIPTED, SLOW_ECHO, *(profiles or [])]
    all_backends: dict[str, ExecutionBackend] = dict(backends or {})
    if scripted is not None:
        all_backends["scripted"] = scripted
    async with Runtime(
        runtime_id=runtime_id,
        limits=limits or Limits(shutdown_grace_s=0.2),
        profiles=Profiles(named, default=default),
        backends=all_backends,
        store=store,
    ) as runtime:
        yield runtime


async def create(runtime: Runtime, profile: str | None = None, **fields: Any) -> WorkerDetail:
    body: dict[str, Any] = dict(fields)
    if profile is not None:
        body["profile"] = {"kind": "named", "name": profile}
    return await runtime.create_worker(body)
