"""The Workspace Backend as one object: ``async with Backend(settings) as backend``.

It owns, and opens and closes in order, the control plane (SQLite), the embedded Runtime,
the task group the remotes' health polls run in, the :class:`~.registry.RuntimeRegistry`
(the embedded source, the remotes of the settings, those the control plane remembers, then
the local stores: live sources win) and the browser app (``backend.app``, an ASGI app)."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from types import TracebackType

import anyio
from starlette.types import ASGIApp

from worker_runtime import MemoryStore, Profiles, Runtime, RuntimeStore, WorkerRuntimeError

from .app import create_backend_app
from .registry import ControlPlane, RuntimeRegistry
from .sessions import Sessions
from .settings import EMBEDDED_ID, BackendSettings, LocalStore
from .sources import EmbeddedSource, LocalSource

__all__ = ["Backend"]

log = logging.getLogger("yoi_workspace_server")

EMBEDDED_NAME = "Backend (embedded)"


class Backend:
    """A Backend of ``settings``. Inside ``async with``: ``app``, ``registry``, ``runtime``
    and ``control``. :meth:`shut_down` (on SIGTERM) closes the embedded Runtime and ends the
    remotes' streams; leaving the block closes everything."""

    app: ASGIApp
    registry: RuntimeRegistry

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        data_dir = settings.data_dir
        self.control = ControlPlane(None if data_dir is None else data_dir / "backend.sqlite3")
        self.runtime = Runtime(
            runtime_id=EMBEDDED_ID,
            display_name=EMBEDDED_NAME,
            store=_embedded_store(settings),
            profiles=settings.profiles or Profiles(),
            limits=settings.runtime_limits,
        )

    def __repr__(self) -> str:
        return f"Backend(settings={self.settings!r})"

    async def __aenter__(self) -> Backend:
        settings = self.settings
        stack = self._stack
        stack.callback(self.control.close)
        try:
            await stack.enter_async_context(self.runtime)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            self.registry = registry = RuntimeRegistry(
                self.control, tg, poll_s=settings.poll_s, limits=settings.remote_limits
            )
            stack.push_async_callback(registry.aclose)
            registry.add_embedded(EmbeddedSource(self.runtime, EMBEDDED_NAME))
            for record in settings.remotes:  # a repeated id is runtime_exists
                await registry.add_remote(record, persist=False)
            await registry.load()  # then the remotes registered through the API
            await _add_local_stores(registry, settings.local_stores)  # last: live sources win
            sessions = Sessions(
                self.control.db, idle_s=settings.session_idle_s, max_s=settings.session_max_s
            )
            if sessions.bind_token(settings.token):
                log.warning("the browser token changed: every browser session was ended")
            self.app = create_backend_app(registry, settings, sessions)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def shut_down(self) -> None:
        """Close the embedded Runtime (its streams end with ``runtime_shutdown``) and end the
        remote sources' streams: what a SIGTERM does before the server stops."""
        await self.runtime.close()
        self.registry.end_streams()


def _embedded_store(settings: BackendSettings) -> RuntimeStore:
    if settings.data_dir is None:
        return MemoryStore()
    from worker_runtime.store.fs import FsRuntimeStore

    return FsRuntimeStore(settings.data_dir / "runtime")


async def _add_local_stores(registry: RuntimeRegistry, stores: tuple[LocalStore, ...]) -> None:
    """Show each local store root read-only; one that cannot be read is logged and skipped
    (by its position in the list: its path stays out of the logs too)."""
    for i, store in enumerate(stores):
        try:
            source = await LocalSource.open(store.root, store.display_name)
        except WorkerRuntimeError as exc:
            log.warning("local store #%d is not shown: %s", i + 1, exc.message)
            continue
        registry.add_local(source)
