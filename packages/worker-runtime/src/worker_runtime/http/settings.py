"""How the REST app and its process are served: :class:`HttpSettings` (the app) and
:class:`ServingLimits` (the connections). Both are plain frozen values, so that the app, the
stream routes and the serving loop read them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput

__all__ = ["HttpSettings", "ServingLimits"]


@dataclass(frozen=True)
class HttpSettings:
    """How the REST app is served. ``token`` is required on every route but ``/healthz``.

    ``event_stream``: mount the SSE routes (contract §7) — ``None`` mounts them when the
    ``event-stream`` extra is installed, ``True`` requires it, ``False`` leaves them out.
    ``heartbeat_s`` is the idle heartbeat interval, ``max_streams`` the cap on open streams
    (503 above it), ``retry_ms`` the reconnect hint sent at the start of each stream.
    """

    token: str
    max_body_bytes: int = 1024 * 1024
    event_stream: bool | None = None
    heartbeat_s: float = 15.0
    max_streams: int = 1024
    retry_ms: int = 2000

    def __post_init__(self) -> None:
        if not self.token or not self.token.strip():
            raise InvalidInput("the bearer token must not be empty")
        if self.max_body_bytes < 1:
            raise InvalidInput("max_body_bytes must be >= 1")
        if not self.heartbeat_s > 0:
            raise InvalidInput("heartbeat_s must be > 0")
        if self.max_streams < 1:
            raise InvalidInput("max_streams must be >= 1")
        if self.retry_ms < 0:
            raise InvalidInput("retry_ms must be >= 0")

    def __repr__(self) -> str:
        return (
            f"HttpSettings(token='***', max_body_bytes={self.max_body_bytes}, "
            f"event_stream={self.event_stream}, heartbeat_s={self.heartbeat_s}, "
            f"max_streams={self.max_streams}, retry_ms={self.retry_ms})"
        )


@dataclass(frozen=True)
class ServingLimits:
    """The connection-level limits of a served process, which hold before any credential is
    checked (a client can open connections, send a head slowly or not at all, or a huge one):

    - ``header_timeout_s``: a request head (request line plus headers) must be complete within
      this time of the connection opening or of the request's first byte, else the connection
      is closed. A connection that sends nothing at all is closed after it too.
    - ``idle_timeout_s``: a kept-alive connection with no request, or a request whose announced
      body stops arriving, is closed after this long without a byte. An open event stream is
      never closed for being idle.
    - ``max_connections``: open connections above it get ``503 runtime_unavailable``
      (``details.reason: "connection_limit"``) and are closed.
    - ``fd_reserve``: a connection accepted when the lowest free descriptor is within this many
      of the soft ``RLIMIT_NOFILE`` is closed at once, so that the store keeps descriptors.
    - ``max_head_bytes``: a request head larger than this gets ``431 request_head_too_large``
      and the connection is closed; the parser never sees more than this many bytes of a head.
    """

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 10.0
    max_connections: int = 2048
    fd_reserve: int = 64
    max_head_bytes: int = 64 * 1024
