"""Serving an ASGI app on a bound socket, the way both yoi processes do (``yoi-runtime`` and
``yoi-workspace-server``), split as uvicorn splits it:

- :func:`serve` (async) serves an app on a socket the caller bound, inside the caller's event
  loop, within :class:`~.settings.ServingLimits`, until a ``stop`` event is set;
- :func:`~._process.run` (sync) owns the event loop and the signals of a process.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import uvicorn

from ._protocol import protocol_class
from ._types import ASGIApp
from .settings import ServingLimits

__all__ = ["ServingLimits", "serve"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process (:func:`~._process.run`) owns
    SIGTERM/SIGINT, so that the Runtime closes gracefully and the process exits 0."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    limits: ServingLimits | None = None,
    stop: anyio.Event | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve ``app`` with uvicorn (httptools, no lifespan, no access log, no
    ``X-Forwarded-*`` trust) on the bound, listening ``sock`` within ``limits``, until ``stop``
    is set (without one: until cancelled). Once ``stop`` is set, ``on_stop()`` runs while the
    server still answers (a Runtime closes there, so that commands get
    ``runtime_unavailable`` and every stream gets its last notice), then the server stops,
    giving open requests 5 s."""
    limits = limits or ServingLimits()
    config = uvicorn.Config(
        app,
        http=protocol_class(limits),
        ws="none",
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        proxy_headers=False,  # never trust X-Forwarded-*: no proxy is configured
        timeout_keep_alive=max(1, round(limits.idle_timeout_s)),
    )
    server = _Server(config)
    async with anyio.create_task_group() as tg:
        if stop is not None:

            async def stop_when_asked() -> None:
                await stop.wait()
                if on_stop is not None:
                    await on_stop()
                server.should_exit = True

            tg.start_soon(stop_when_asked)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()
