"""The RuntimeRegistry: every runtime source by runtime_id, and the Backend's control plane in
SQLite (registered remote runtimes and their last known status).

A live source (embedded or remote) always wins over a local store projection of the same
runtime_id: a local root whose runtime is served live is not shown, and registering a remote
with the id of a local projection replaces the projection (it comes back when that remote is
removed)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from worker_runtime import (
    Conflict,
    RuntimeExists,
    RuntimeNotFound,
    UnsupportedOperation,
    WorkerRuntimeError,
)
from worker_runtime.models import require_id

from ._transport import ReplyLimits
from .remote_urls import check_base_url, check_resolved
from .sources import RemoteSource, Source

log = logging.getLogger("yoi_workspace_server.registry")

__all__ = ["ControlPlane", "RemoteLimits", "RemoteRecord", "RuntimeRegistry", "TooManyRuntimes"]


class TooManyRuntimes(Conflict):
    """The Backend already holds its maximum of registered remote runtimes."""

    code = "too_many_runtimes"


@dataclass(frozen=True)
class RemoteLimits:
    """What the Backend allows each remote and all of them: ``max_remotes`` registered at
    once, ``max_streams_per_remote`` open browser streams to one remote (its stream pool),
    ``max_command_connections`` connections for its commands (a pool of their own), and the
    :class:`ReplyLimits` of every reply."""

    max_remotes: int = 64
    max_streams_per_remote: int = 256
    max_command_connections: int = 32
    reply: ReplyLimits = field(default_factory=ReplyLimits)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS remote_runtimes (
    runtime_id   TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    base_url     TEXT NOT NULL,
    token        TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runtime_status (
    runtime_id  TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    checked_at  TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class RemoteRecord:
    runtime_id: str
    display_name: str
    base_url: str
    token: str

    def __repr__(self) -> str:
        return f"RemoteRecord(runtime_id={self.runtime_id!r})"


class ControlPlane:
    """The Backend's SQLite database (``<data-dir>/backend.sqlite3``, mode 0600: it holds the
    remote runtimes' tokens)."""

    def __init__(self, path: Path | None) -> None:
        """``path`` ``None``: an in-memory database (a Backend without a data directory)."""
        if path is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for the other tables of the control plane (browser sessions)."""
        return self._db

    def remotes(self) -> list[RemoteRecord]:
        rows = self._db.execute(
            "SELECT runtime_id, display_name, base_url, token FROM remote_runtimes "
            "ORDER BY created_at, runtime_id"
        ).fetchall()
        # SQLite keeps any type in a TEXT column: a row that is not all text is not a record.
        return [RemoteRecord(*row) for row in rows if all(isinstance(v, str) for v in row)]

    def add_remote(self, record: RemoteRecord) -> None:
        self._db.execute(
            "INSERT INTO remote_runtimes VALUES (?, ?, ?, ?, ?)",
            (
                record.runtime_id,
                record.display_name,
                record.base_url,
                record.token,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            ),
        )

    def remove_remote(self, runtime_id: str) -> None:
        self._db.execute("DELETE FROM remote_runtimes WHERE runtime_id = ?", (runtime_id,))
        self._db.execute("DELETE FROM runtime_status WHERE runtime_id = ?", (runtime_id,))

    def record_status(self, runtime_id: str, status: str, reason: str) -> None:
        self._db.execute(
            "INSERT INTO runtime_status VALUES (?, ?, ?, ?) ON CONFLICT(runtime_id) DO UPDATE "
            "SET status = excluded.status, reason = excluded.reason, "
            "checked_at = excluded.checked_at",
            (runtime_id, status, reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        )

    def last_status(self, runtime_id: str) -> tuple[str, str] | None:
        """The (status, reason) last recorded for a runtime, if any."""
        row = self._db.execute(
            "SELECT status, reason FROM runtime_status WHERE runtime_id = ?", (runtime_id,)
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def close(self) -> None:
        self._db.close()


class RuntimeRegistry:
    """Routes by runtime_id. Holds the embedded source and the remote ones; remotes are polled
    for health in the registry's task group."""

    def __init__(
        self,
        control: ControlPlane,
        task_group: TaskGroup,
        *,
        poll_s: float = 2.0,
        limits: RemoteLimits | None = None,
    ):
        self._control = control
        self._tg = task_group
        self._poll_s = poll_s
        self.limits = limits or RemoteLimits()
        self._sources: dict[str, Source] = {}
        self._pollers: dict[str, anyio.CancelScope] = {}
        self._shadowed: dict[str, Source] = {}  # projections a live source serves

    def add_embedded(self, source: Source) -> None:
        self._sources[source.runtime_id] = source

    def add_local(self, source: Source) -> bool:
        """Register a projection of a store (a source that is not ``live``), unless a source
        already serves its runtime_id (then it is not shown: ``False``)."""
        if source.runtime_id in self._sources:
            log.warning(
                "local store of runtime %s is not shown: a source with that id is registered",
                source.runtime_id,
            )
            return False
        self._sources[source.runtime_id] = source
        return True

    def sources(self) -> list[Source]:
        return list(self._sources.values())

    def get(self, runtime_id: str) -> Source:
        source = self._sources.get(runtime_id)
        if source is None:
            raise RuntimeNotFound(
                "no runtime with that id is registered", details={"runtime_id": runtime_id[:200]}
            )
        return source

    async def add_remote(self, record: RemoteRecord, *, persist: bool) -> RemoteSource:
        """Register a remote runtime. A new registration (``persist``: recorded in the control
        plane) is checked before this returns; one restored at start-up shows its last known
        status until its poller's first check, so a dead remote never delays the start.

        Whatever the remote answers to that check, it is registered: a remote that cannot be
        reached or answers nonsense is ``unavailable`` with the reason (``unreachable``,
        ``timeout``, ``bad_reply``, ``redirect`` …) and its poller keeps checking. Only what
        the caller sent can refuse a registration (``invalid_input``, ``runtime_exists``,
        ``too_many_runtimes``)."""
        require_id(record.runtime_id, "runtime_id")
        if persist:  # a new registration: its name is resolved too
            await check_resolved(record.base_url)
        else:
            check_base_url(record.base_url)
        existing = self._sources.get(record.runtime_id)
        if existing is not None and existing.live:
            raise RuntimeExists(
                "a runtime with that id is already registered",
                details={"runtime_id": record.runtime_id},
            )
        limits = self.limits
        if persist and len(self._pollers) >= limits.max_remotes:
            raise TooManyRuntimes(
                f"the Backend already has {limits.max_remotes} remote runtimes (its maximum); "
                "remove one first",
                details={"max_remotes": limits.max_remotes},
            )
        source = RemoteSource(
            record.runtime_id,
            record.display_name,
            record.base_url,
            record.token,
            limits=limits.reply,
            max_command_connections=limits.max_command_connections,
            max_streams=limits.max_streams_per_remote,
            poll_s=self._poll_s,
            on_status=self._control.record_status,
            last_known=None if persist else self._control.last_status(record.runtime_id),
        )
        if persist:
            self._control.add_remote(record)
        if existing is not None:  # a projection, which comes back when the remote goes
            self._shadowed[record.runtime_id] = existing
        self._sources[record.runtime_id] = source
        scope = anyio.CancelScope()
        self._pollers[record.runtime_id] = scope
        if persist:
            await source.check()  # never raises

        async def poll() -> None:
            with scope:
                await source.poll()

        self._tg.start_soon(poll)
        return source

    def spawn(self, run: Callable[[], Awaitable[None]]) -> anyio.CancelScope:
        """Run ``run`` in the registry's task group (it lives as long as the Backend) under a
        scope of its own; cancelling the scope ends it."""
        scope = anyio.CancelScope()

        async def guarded() -> None:
            with scope:
                await run()

        self._tg.start_soon(guarded)
        return scope

    async def remove(self, runtime_id: str) -> None:
        source = self.get(runtime_id)
        if not source.removable:
            raise UnsupportedOperation(
                f"a {source.kind} runtime cannot be removed", details={"runtime_id": runtime_id}
            )
        # The row goes first: nothing after it may leave a removed remote behind.
        self._control.remove_remote(runtime_id)
        del self._sources[runtime_id]
        local = self._shadowed.pop(runtime_id, None)
        if local is not None:
            self._sources[runtime_id] = local
        poller = self._pollers.pop(runtime_id, None)
        if poller is not None:
            poller.cancel()
        source.end_streams("this runtime was removed from the Backend")
        try:
            await source.aclose()
        except Exception:
            log.exception("closing the connections of runtime %s failed", runtime_id)

    async def load(self) -> None:
        """Register every remote the control plane remembers. A row that cannot be
        registered (an invalid id or URL: written by hand, or by an older version) is
        logged by its position and skipped: no stored row stops the Backend from starting."""
        for i, record in enumerate(self._control.remotes()):
            if record.runtime_id in self._sources:
                continue
            try:
                await self.add_remote(record, persist=False)
            except (WorkerRuntimeError, ValueError, TypeError) as exc:
                log.warning("stored remote runtime #%d is not loaded: %s", i + 1, _why(exc))

    def end_streams(self) -> None:
        """End the remote sources' open streams (the embedded Runtime ends its own when it
        closes)."""
        for source in self._sources.values():
            source.end_streams()

    async def aclose(self) -> None:
        for scope in self._pollers.values():
            scope.cancel()
        for source in self._sources.values():
            await source.aclose()


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, WorkerRuntimeError) else type(exc).__name__
