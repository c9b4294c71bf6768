"""What a Workspace Backend is made of: :class:`BackendSettings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from worker_runtime import Limits, Profiles

from .registry import RemoteLimits, RemoteRecord

__all__ = ["EMBEDDED_ID", "BackendSettings", "LocalStore"]

#: The runtime_id of every Backend's embedded Runtime.
EMBEDDED_ID = "backend-internal"


@dataclass(frozen=True)
class LocalStore:
    """An fs-store root shown read-only (``display_name``: its name in the console)."""

    root: Path
    display_name: str | None = None


@dataclass(frozen=True)
class BackendSettings:
    """Everything a Backend is made of.

    The browser side: ``token`` is the browser token (always required; see :mod:`.trust`).
    ``bound_host``, ``allowed_hosts`` and ``public_url`` make the Host allow-list and the
    Backend's own origin; sessions end ``session_idle_s`` after their last use and
    ``session_max_s`` after sign-in. More than ``failed_login_budget`` failed sign-ins or bad
    tokens from one client in a minute are answered ``429 too_many_requests``.
    ``max_streams``: open browser event streams over every source (503
    ``runtime_unavailable`` with ``reason: too_many_streams`` above it; each remote has its
    own cap too, see :class:`~yoi_workspace_server.registry.RemoteLimits`).

    The sources (used by :class:`~yoi_workspace_server.backend.Backend`): ``data_dir`` holds
    the embedded Runtime's fs store (``runtime/``) and the control plane
    (``backend.sqlite3``); without one both are in memory. ``profiles`` and
    ``runtime_limits`` are the embedded Runtime's; ``remotes`` and ``local_stores`` are
    registered at start (after them, the remotes the control plane remembers), each remote
    within ``remote_limits`` and health-checked every ``poll_s``.
    """

    token: str
    max_body_bytes: int = 1024 * 1024
    heartbeat_s: float = 15.0
    max_streams: int = 1024
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    public_url: str | None = None
    session_idle_s: float = 12 * 3600.0
    session_max_s: float = 7 * 86400.0
    failed_login_budget: int = 10
    data_dir: Path | None = None
    profiles: Profiles | None = None
    runtime_limits: Limits | None = None
    remote_limits: RemoteLimits = field(default_factory=RemoteLimits)
    remotes: tuple[RemoteRecord, ...] = ()
    local_stores: tuple[LocalStore, ...] = ()
    poll_s: float = 2.0

    def __repr__(self) -> str:
        return (
            f"BackendSettings(token='***', max_body_bytes={self.max_body_bytes}, "
            f"heartbeat_s={self.heartbeat_s}, max_streams={self.max_streams}, "
            f"bound_host={self.bound_host!r}, allowed_hosts={self.allowed_hosts!r}, "
            f"public_url={self.public_url!r})"
        )
