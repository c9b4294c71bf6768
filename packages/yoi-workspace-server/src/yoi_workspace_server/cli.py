"""``yoi-workspace-server`` (and ``yoi up``): the Workspace Backend with its embedded Runtime,
as a thin argparse wrapper around :class:`~.backend.Backend` (the flags and ``--config``, see
:mod:`.config`, make its :class:`~.settings.BackendSettings`).

The embedded Runtime (runtime_id ``backend-internal``) keeps its Workers in the fs store under
``<data-dir>/runtime``; the control plane is ``<data-dir>/backend.sqlite3``. Remote runtimes
come from ``--config`` and from ``POST /api/runtimes``; local store roots (shown read-only)
from ``--config`` and ``--local-store``.

A browser token is always required (``docs/security.md``): from ``--token-file`` or
``--token-env``, else generated at the first start into ``<data-dir>/backend.token`` (0600) and
reused. On start the Backend prints its console link with the token in the URL fragment
(``http://HOST:PORT/#token=…``: a fragment never reaches a server) and where the token is.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import anyio

from worker_runtime import Profiles, WorkerRuntimeError
from worker_runtime.cli import (
    Bind,
    StartError,
    add_limit_arguments,
    parse_bind,
    positive_float,
    positive_int,
    runtime_limits,
    serving_limits,
)
from worker_runtime.http import bind_socket, configure_logging
from worker_runtime.http import run as run_process
from worker_runtime.http import serve as serve_app
from worker_runtime.secretfile import SecretFileError, write_secret

from ._transport import ReplyLimits
from .backend import Backend
from .config import Config, ConfigError, load_config, read_token
from .registry import RemoteLimits
from .settings import BackendSettings, LocalStore
from .tokens import MIN_TOKEN_CHARS, TokenError, load_or_create_token
from .trust import TrustSettings

log = logging.getLogger("yoi_workspace_server")

__all__ = [
    "Config",
    "LocalStore",
    "browser_token",
    "build_parser",
    "console_link",
    "load_config",
    "main",
    "run",
    "settings_of",
]

DEFAULT_BIND = "127.0.0.1:8700"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser(prog: str = "yoi-workspace-server") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Serve the yoi Workspace Backend: one browser-facing API over the "
        "embedded Runtime and any remote yoi-runtime processes.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind", type=parse_bind, default=parse_bind(DEFAULT_BIND), help=f"default {DEFAULT_BIND}"
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".yoi"), help="default ./.yoi")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--token-file", type=Path, default=None, help="browser token file")
    tokens.add_argument("--token-env", default=None, metavar="VAR", help="browser token env var")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name browsers may use (repeatable); localhost, 127.0.0.1, [::1] "
        "and the bound host are always allowed",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="the address browsers use behind a reverse proxy, e.g. https://yoi.example.com "
        "(its host is allowed; https makes the session cookie Secure)",
    )
    parser.add_argument(
        "--session-idle-s",
        type=positive_float,
        default=12 * 3600.0,
        metavar="S",
        help="a browser session ends after this long unused (default 12 h)",
    )
    parser.add_argument(
        "--session-max-s",
        type=positive_float,
        default=7 * 86400.0,
        metavar="S",
        help="a browser session ends this long after sign-in (default 7 days)",
    )
    parser.add_argument(
        "--failed-login-budget",
        type=positive_int,
        default=10,
        metavar="N",
        help="failed sign-ins or bad tokens one client may make per minute before it gets "
        "429 too_many_requests (default 10)",
    )
    parser.add_argument("--config", type=Path, default=None, help="Backend config TOML")
    parser.add_argument("--profiles", type=Path, default=None, help="profiles TOML (embedded)")
    parser.add_argument(
        "--local-store",
        type=Path,
        action="append",
        default=[],
        metavar="ROOT",
        help="an fs-store root to show read-only (repeatable)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    add_limit_arguments(parser)
    limits = parser.add_argument_group("limits (what one remote or browser may cost)")
    limits.add_argument(
        "--max-streams",
        type=positive_int,
        default=1024,
        metavar="N",
        help="open browser event streams over all sources (default 1024)",
    )
    limits.add_argument(
        "--max-streams-per-remote",
        type=positive_int,
        default=256,
        metavar="N",
        help="open browser event streams to one remote runtime (default 256)",
    )
    limits.add_argument(
        "--max-remotes",
        type=positive_int,
        default=64,
        metavar="N",
        help="remote runtimes registered through the API (default 64)",
    )
    limits.add_argument(
        "--remote-deadline-s",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="a whole command to a remote runtime, every byte of the reply (default 5)",
    )
    limits.add_argument(
        "--max-reply-bytes",
        type=positive_int,
        default=16 * 1024 * 1024,
        metavar="N",
        help="a remote's reply, on the wire and decoded (default 16 MiB)",
    )
    limits.add_argument(
        "--max-event-line-bytes", type=positive_int, default=4 * 1024 * 1024, metavar="N",
        help="one line of a remote's event stream (default 4 MiB)",
    )  # fmt: skip


def remote_limits(args: argparse.Namespace) -> RemoteLimits:
    """The :class:`RemoteLimits` the flags ask for."""
    return RemoteLimits(
        max_remotes=args.max_remotes,
        max_streams_per_remote=args.max_streams_per_remote,
        reply=ReplyLimits(
            deadline_s=args.remote_deadline_s,
            max_reply_bytes=args.max_reply_bytes,
            max_line_bytes=args.max_event_line_bytes,
        ),
    )


def settings_of(args: argparse.Namespace, token: str, config: Config) -> BackendSettings:
    """The :class:`BackendSettings` the flags and the config file ask for."""
    bind: Bind = args.bind
    local = config.local_stores + [LocalStore(root) for root in args.local_store]
    return BackendSettings(
        token=token,
        max_streams=args.max_streams,
        bound_host=bind.host,
        allowed_hosts=tuple(config.allowed_hosts + args.allowed_host),
        public_url=args.public_url or config.public_url,
        session_idle_s=args.session_idle_s,
        session_max_s=args.session_max_s,
        failed_login_budget=args.failed_login_budget,
        data_dir=args.data_dir,
        profiles=Profiles.from_toml(args.profiles) if args.profiles else Profiles(),
        runtime_limits=runtime_limits(args),
        remote_limits=remote_limits(args),
        remotes=tuple(config.remotes),
        local_stores=tuple(local),
    )


async def run(
    args: argparse.Namespace,
    token: str,
    config: Config,
    sock: socket.socket,
    where: str,
    stop: anyio.Event,
) -> None:
    """Serve until ``stop`` (SIGTERM/SIGINT); then close the embedded Runtime and end the
    remote sources' streams while the server still answers, and stop."""
    settings = settings_of(args, token, config)
    try:
        async with Backend(settings) as backend:
            url = args.bind.url(sock.getsockname()[1])
            print(
                f"yoi workspace backend listening on {url}\n"
                f"open the console: {console_link(settings.public_url or url, token)}\n"
                f"{where}",
                flush=True,
            )
            limits = serving_limits(args)
            await serve_app(backend.app, sock, limits=limits, stop=stop, on_stop=backend.shut_down)
    except WorkerRuntimeError as exc:
        raise StartError(exc.message) from None


def console_link(base_url: str, token: str) -> str:
    """The console's URL with the token in the fragment (``…/#token=…``)."""
    return f"{base_url.rstrip('/')}/#token={quote(token, safe='')}"


def browser_token(args: argparse.Namespace) -> tuple[str, str]:
    """The browser token and a line saying where it is (a path or an env var's name)."""
    configured = read_token(args.token_file, args.token_env, "browser")
    if configured is not None:
        if len(configured) < MIN_TOKEN_CHARS:
            raise StartError(f"the browser token must be at least {MIN_TOKEN_CHARS} characters")
        if args.token_file is not None:
            return configured, f"browser token file: {args.token_file}"
        return configured, f"browser token: from the environment variable {args.token_env}"
    try:
        token, path = load_or_create_token(args.data_dir)
    except TokenError as exc:
        raise StartError(str(exc)) from None
    return token, f"browser token file: {path}"


def main(argv: Sequence[str] | None = None, prog: str = "yoi-workspace-server") -> int:
    """Entry point of ``yoi-workspace-server`` (and of ``yoi up``)."""
    args = build_parser(prog).parse_args(argv)
    return serve(args, prog)


def serve(args: argparse.Namespace, prog: str) -> int:
    configure_logging(args.log_level)
    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except StartError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.profiles is not None:
            Profiles.from_toml(args.profiles)
        _check_trust_settings(args, config)
        args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        token, where = browser_token(args)
        sock = bind_socket(args.bind.host, args.bind.port)
    except StartError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except WorkerRuntimeError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: {exc.strerror}", file=sys.stderr)
        return 1
    if not args.bind.loopback:
        log.warning(
            "listening on a non-loopback address over plain HTTP: put a TLS reverse proxy in "
            "front (see docs/security.md)"
        )
    record = _write_url_record(args.data_dir, args.bind, sock.getsockname()[1])
    try:
        run_process(partial(run, args, token, config, sock, where), sock=sock)
    except StartError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        if record is not None:
            record.unlink(missing_ok=True)
    return 0


URL_RECORD_NAME = "backend.json"


def _write_url_record(data_dir: Path, bind: Bind, port: int) -> Path | None:
    """``<data-dir>/backend.json`` ``{"url": …}``: where this Backend listens, so ``yoi``
    finds a non-default port. Written (0600, like the token) once the socket is bound, and
    removed at a clean exit; a stale one only names a URL nothing answers at."""
    host = bind.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = Bind(host, port).url()
    path = data_dir / URL_RECORD_NAME
    try:
        write_secret(path, json.dumps({"url": url}) + "\n", replace=True)
    except SecretFileError as exc:
        log.warning("cannot write the URL record %s (%s)", URL_RECORD_NAME, exc)
        return None
    return path


def _check_trust_settings(args: argparse.Namespace, config: Config) -> None:
    """Refuse a bad --allowed-host or --public-url before anything is written or bound."""
    try:
        TrustSettings(
            token="-" * MIN_TOKEN_CHARS,  # not checked here
            bound_host=args.bind.host,
            allowed_hosts=tuple(config.allowed_hosts + args.allowed_host),
            public_url=args.public_url or config.public_url,
        )
    except ValueError as exc:
        raise StartError(str(exc)) from None


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
