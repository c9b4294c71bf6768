"""The serving loop shared by ``yoi-runtime`` and ``yoi-workspace-server``: uvicorn on a bound
socket, with the limits that keep a process up under hostile connections.

Before any credential is checked a client can open connections, send a request head slowly or
not at all, or send a huge one. :class:`ServingLimits` bounds each of these:

- ``header_timeout_s``: a request head (request line plus headers) must be complete within this
  time of the connection opening or of the request's first byte; otherwise the connection is
  closed. A connection that sends nothing at all is closed after it too.
- ``idle_timeout_s``: a kept-alive connection with no request, or a request whose announced
  body stops arriving, is closed after this long without a byte.
- ``max_connections``: open connections above it get ``503 runtime_unavailable``
  (``details.reason: "connection_limit"``) and are closed.
- ``fd_reserve``: a connection accepted when the lowest free descriptor is within this many of
  the soft ``RLIMIT_NOFILE`` is closed at once, so that the store always has descriptors left.
- ``max_head_bytes``: a request head larger than this gets ``431 request_head_too_large`` and
  the connection is closed; the parser never sees more than this many bytes of one head, so
  its cost stays linear and small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httptools
import uvicorn
from anyio.abc import TaskStatus
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ServingLimits", "serve_until_signalled"]

log = logging.getLogger("worker_runtime.serve")


@dataclass(frozen=True)
class ServingLimits:
    """The connection-level limits of a served process (see the module docstring)."""

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 10.0
    max_connections: int = 2048
    fd_reserve: int = 64
    max_head_bytes: int = 64 * 1024


_last_warning: dict[str, float] = {}


def _warn(message: str) -> None:
    """Log a refusal at most once every 10 s: an attack must not flood the log."""
    now = time.monotonic()
    if now - _last_warning.get(message, -1e9) >= 10.0:
        _last_warning[message] = now
        log.warning(message)


class _Refused(Exception):
    """Stops the parser once a response that closes the connection has been written."""


_REASONS = {431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def _error_response(status: int, code: str, message: str, details: dict[str, Any]) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    ) + body


_HEAD_TOO_LARGE = _error_response(
    431,
    "request_head_too_large",
    "the request line and headers are larger than the server accepts",
    {},
)
_TOO_MANY_CONNECTIONS = _error_response(
    503,
    "runtime_unavailable",
    "the server has too many open connections; retry later",
    {"reason": "connection_limit"},
)


def _protocol_class(limits: ServingLimits) -> type[asyncio.Protocol]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd_ceiling = None if soft == resource.RLIM_INFINITY else soft - limits.fd_reserve

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a head deadline, a body idle timeout, a head size
        cap, a connection cap and a descriptor reserve."""

        _head_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _in_head = True
        _head_bytes = 0
        _over_limit = False
        _refused = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
            if fd_ceiling is not None and fd >= fd_ceiling:
                # The kernel hands out the lowest free descriptor: every one below this is in
                # use, so fewer than fd_reserve are left. Keep them for the store.
                _warn("descriptor reserve reached: closing new connections")
                transport.abort()  # type: ignore[attr-defined]
                self.transport = transport  # type: ignore[assignment]
                self._refused = True
                return
            super().connection_made(transport)  # type: ignore[arg-type]
            self.timeout_keep_alive = limits.idle_timeout_s  # type: ignore[assignment]
            if len(self.connections) > limits.max_connections:
                self._over_limit = True
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            if self._refused and self.flow is None:
                return  # closed in connection_made: uvicorn never knew of it
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout_s, self._time_out)

        def _arm_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
            self._body_timer = self.loop.call_later(limits.idle_timeout_s, self._body_time_out)

        def _cancel_timers(self) -> None:
            for timer in (self._head_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._head_timer = self._body_timer = None

        def _time_out(self) -> None:
            self._cancel_timers()
            if not self.transport.is_closing():
                self.transport.close()

        def _body_time_out(self) -> None:
            if self.flow is not None and self.flow.read_paused:
                self._arm_body_timer()  # the app has not read what came: not the client's fault
                return
            self._time_out()

        def _refuse(self, response: bytes) -> None:
            self._refused = True
            self._cancel_timers()
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused or self.parser is None:
                return
            self._unset_keepalive_if_required()
            view = memoryview(data)
            while view and not self._refused:
                if self._in_head:
                    self._arm_head_timer()
                    room = limits.max_head_bytes - self._head_bytes
                    if room <= 0:
                        self._refuse(_HEAD_TOO_LARGE)
                        return
                    piece, view = view[:room], view[room:]
                    self._head_bytes += len(piece)
                else:
                    piece, view = view, view[len(view) :]
                    if self._body_timer is not None:
                        self._arm_body_timer()
                if not self._feed(bytes(piece)):
                    return

        def _feed(self, data: bytes) -> bool:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                return False  # no upgrades are served; the request itself was answered
            except httptools.HttpParserError:
                if not self._refused:
                    self._refused = True
                    self._cancel_timers()
                    self.send_400_response("Invalid HTTP request received.")
                return False
            return True

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._arm_head_timer()

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self._over_limit:
                _warn("connection limit reached: answering 503 to new connections")
                self._refuse(_TOO_MANY_CONNECTIONS)
                raise _Refused
            super().on_headers_complete()
            self._arm_body_timer()

        def on_message_complete(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            self._in_head = True  # the bytes after this message are the next one's head
            self._head_bytes = 0
            super().on_message_complete()

    return GuardedHttpToolsProtocol


def _server_class() -> Any:
    class Server(uvicorn.Server):
        """uvicorn without its own signal handling: the CLI owns SIGTERM/SIGINT, so that the
        Runtime closes gracefully and the process exits 0."""

        def install_signal_handlers(self) -> None:  # older uvicorn
            return None

        def capture_signals(self) -> Any:  # newer uvicorn
            import contextlib

            return contextlib.nullcontext()

    return Server


async def serve_until_signalled(
    app: Any,
    sock: socket.socket,
    *,
    on_signal: Callable[[], Awaitable[None]],
    announce: str,
    limits: ServingLimits | None = None,
) -> None:
    """Serve ``app`` with uvicorn on the bound ``sock`` until SIGTERM or SIGINT, within
    ``limits``. The signal handlers are in place before ``announce`` is printed; on a signal
    ``on_signal()`` runs while the server still answers, then the server stops."""
    limits = limits or ServingLimits()
    config = uvicorn.Config(
        app,
        http=_protocol_class(limits),
        ws="none",
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        proxy_headers=False,  # never trust X-Forwarded-*: no proxy is configured
        timeout_keep_alive=max(1, round(limits.idle_timeout_s)),
    )
    server = _server_class()(config)
    async with anyio.create_task_group() as tg:

        async def watch_signals(
            *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                task_status.started()
                async for signum in signals:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    await on_signal()
                    server.should_exit = True
                    return

        await tg.start(watch_signals)
        print(announce, flush=True)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()
