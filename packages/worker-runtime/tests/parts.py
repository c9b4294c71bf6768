"""Builds the Runtime's parts by hand, for the unit tests of each part."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from worker_runtime import ExecutionBackend, Limits, MemoryStore, Profile, RuntimeStore
from worker_runtime._catalog import Catalog
from worker_runtime._context import ContextPolicy
from worker_runtime._journal import Journal
from worker_runtime._turnrunner import TurnRunner
from worker_runtime._worker import Worker
from worker_runtime.execution.echo import EchoBackend

ECHO = Profile(name="echo-test", provider="echo")


@dataclass
class Parts:
    store: RuntimeStore
    catalog: Catalog
    journal: Journal
    context: ContextPolicy
    runner: TurnRunner

    def new_worker(self, profile: Profile = ECHO) -> Worker:
        """A Worker added to the catalog and journaled as created (as ``create_worker`` does)."""
        w = self.catalog.add_new(
            self.catalog.new_id(), None, profile, "2026-01-01T00:00:00.000000Z", ""
        )
        self.journal.emit("worker_created", w, None, {"worker": {"worker_id": w.worker_id}})
        return w


@asynccontextmanager
async def open_parts(
    *,
    limits: Limits | None = None,
    store: RuntimeStore | None = None,
    backends: Mapping[str, ExecutionBackend] | None = None,
) -> AsyncIterator[Parts]:
    """The parts wired as a Runtime wires them, with a task group for turns."""
    limits = limits or Limits()
    store = store if store is not None else MemoryStore()
    opened = await store.open(runtime_id="rt-parts", limits=limits)
    catalog = Catalog("rt-parts", limits)
    journal = Journal("rt-parts", limits, store, catalog)
    journal.open(opened)
    for recovered in opened.workers:
        catalog.restore(recovered)
    context = ContextPolicy(store)
    all_backends: dict[str, ExecutionBackend] = {"echo": EchoBackend(), **(backends or {})}
    accepting = [True]
    runner = TurnRunner("rt-parts", limits, journal, context, all_backends, lambda: accepting[0])
    async with anyio.create_task_group() as tg:
        runner.tg = tg
        yield Parts(store, catalog, journal, context, runner)
        accepting[0] = False
        for turn in catalog.running():
            turn.scope.cancel()
        runner.close()
