"""The connection-level limits of a served process (:class:`~.settings.ServingLimits`),
enforced in a subclass of uvicorn's httptools protocol: a head deadline, a body idle timeout, a
head size cap, a connection cap and a descriptor reserve."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import ServingLimits

__all__ = ["protocol_class"]

log = logging.getLogger("worker_runtime.serve")


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


def protocol_class(limits: ServingLimits) -> type[asyncio.Protocol]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd_ceiling = None if soft == resource.RLIM_INFINITY else soft - limits.fd_reserve

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a head deadline, a body idle timeout, a head size
        cap, a connection cap and a descriptor reserve."""

        _head_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _in_head = True
        _begun = False  # a request's first byte came, its head is not complete yet
        _completed = False  # a request was completed by the bytes being parsed
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
            self._completed = False
            view = memoryview(data)
            while view and not self._refused:
                if self._in_head:
                    room = limits.max_head_bytes - self._head_bytes
                    if room <= 0:
                        self._refuse(_HEAD_TOO_LARGE)
                        return
                    piece, view = view[:room], view[room:]
                    self._head_bytes += len(piece)
                else:
                    piece, view = view, view[len(view) :]
                if not self._feed(bytes(piece)):
                    return
            # Timers only for what is still incomplete once these bytes are parsed: a request
            # that arrived whole (the common case) arms none.
            if not self._in_head:
                self._arm_body_timer()  # (re)armed on every piece of a body still arriving
            elif self._head_timer is None and (self._begun or not self._completed):
                self._arm_head_timer()

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
            self._begun = True

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._begun = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self._over_limit:
                _warn("connection limit reached: answering 503 to new connections")
                self._refuse(_TOO_MANY_CONNECTIONS)
                raise _Refused
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            self._in_head = True  # the bytes after this message are the next one's head
            self._head_bytes = 0
            self._completed = True
            super().on_message_complete()

    return GuardedHttpToolsProtocol
