"""A served process: its listening socket (:func:`bind_socket`) and its event loop and signals
(:func:`run`), shared by ``yoi-runtime`` and ``yoi-workspace-server``."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["BindError", "bind_socket", "run"]

log = logging.getLogger("worker_runtime.serve")


class BindError(OSError):
    """The address cannot be listened on; the message says why, in one line."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), inheritable, with a
    backlog of 2048; :class:`BindError` if it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so, and without it every response waits on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BindError(exc.errno, f"cannot bind {host}:{port}: {reason}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(
    main: Callable[[anyio.Event], Awaitable[None]], *, sock: socket.socket | None = None
) -> None:
    """Run ``main(stop)`` on a new event loop (uvloop when installed) that owns SIGTERM and
    SIGINT: the first sets ``stop`` (``main`` hands it to :func:`~._serve.serve`, which then
    shuts down gracefully), a second one cancels ``main``. An exception of ``main`` is raised
    as is. Closes ``sock`` either way."""
    failure: list[BaseException] = []

    async def supervised() -> None:
        stop = anyio.Event()
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:

                async def watch_signals() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if stop.is_set():
                            log.warning("received %s again: stopping now", name)
                            tg.cancel_scope.cancel()
                            return
                        log.info("received %s: shutting down", name)
                        stop.set()

                tg.start_soon(watch_signals)
                try:
                    await main(stop)
                except Exception as exc:  # raised as is, not in a task group's ExceptionGroup
                    failure.append(exc)
                finally:
                    tg.cancel_scope.cancel()

    try:
        anyio.run(supervised, backend_options=_loop_options())
    finally:
        if sock is not None:
            sock.close()
    if failure:
        raise failure[0]


def _loop_options() -> dict[str, Any]:
    """uvloop when it is installed (the http-server extra brings it where it exists)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
