"""The argument helpers both processes share: ``yoi-runtime`` (:mod:`worker_runtime.cli`) and the
Workspace Backend's CLI. They import no extra: ``yoi-runtime --help`` works without one."""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import Limits
from .secretfile import SecretFileError, write_secret


class StartError(Exception):
    """A start failure: printed as one line, exit 1."""


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port if port is not None else self.port}"


def parse_bind(value: str) -> Bind:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--bind must be HOST:PORT, got {value!r}")
    return Bind(host, int(port))


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection and Runtime limits both processes take (docs/operations.md)."""
    defaults = Limits()
    group = parser.add_argument_group("limits")
    group.add_argument(
        "--header-timeout-s",
        type=positive_float,
        default=10.0,
        help="close a connection whose request head is not complete in this time (default 10)",
    )
    group.add_argument(
        "--idle-timeout-s",
        type=positive_float,
        default=10.0,
        help="close a kept-alive connection, or a request body, silent this long (default 10)",
    )
    group.add_argument(
        "--max-connections",
        type=positive_int,
        default=2048,
        help="open connections above it get 503 and are closed (default 2048)",
    )
    group.add_argument(
        "--fd-reserve",
        type=positive_int,
        default=64,
        help="file descriptors kept free for the store: new connections are closed when "
        "fewer are left (default 64)",
    )
    group.add_argument(
        "--max-head-bytes",
        type=positive_int,
        default=64 * 1024,
        help="largest request line plus headers; above it 431 (default 65536)",
    )
    group.add_argument(
        "--max-workers",
        type=positive_int,
        default=defaults.max_workers,
        help=f"most Workers a Runtime holds; beyond it limit_exceeded (default "
        f"{defaults.max_workers})",
    )
    group.add_argument(
        "--event-window-bytes",
        type=positive_int,
        default=defaults.runtime_event_window_bytes,
        help="byte budget of the in-memory event window (default "
        f"{defaults.runtime_event_window_bytes})",
    )


def serving_limits(args: argparse.Namespace) -> Any:
    """The :class:`~worker_runtime.http.ServingLimits` of parsed flags."""
    import resource

    from .http import ServingLimits

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and args.fd_reserve > soft - 32:
        raise StartError(
            f"--fd-reserve {args.fd_reserve} leaves fewer than 32 of the {soft} file "
            "descriptors (RLIMIT_NOFILE) for connections"
        )
    return ServingLimits(
        header_timeout_s=args.header_timeout_s,
        idle_timeout_s=args.idle_timeout_s,
        max_connections=args.max_connections,
        fd_reserve=args.fd_reserve,
        max_head_bytes=args.max_head_bytes,
    )


def runtime_limits(args: argparse.Namespace, **more: Any) -> Limits:
    """The Runtime :class:`Limits` of parsed flags (the rest at their defaults)."""
    return Limits(
        max_workers=args.max_workers,
        runtime_event_window_bytes=args.event_window_bytes,
        **more,
    )


def positive_float(value: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """An argparse type: a whole number from 1."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return int(value)


def write_generated_token(path: Path, token: str) -> str:
    """Write a generated token once the process holds what the path is keyed on (the store's
    lock, the bound port): a file left there is a dead process's, and is replaced (a symlink
    there is replaced, never followed). Returns the description printed at start."""
    try:
        write_secret(path, token + "\n", replace=True)
    except SecretFileError as exc:
        raise StartError(f"cannot write the generated token file: {exc}") from None
    return f"generated token file {path}"
