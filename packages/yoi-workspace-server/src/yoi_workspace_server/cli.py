"""``yoi-workspace-server`` (and ``yoi up``): the Workspace Backend with its embedded Runtime.

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
import os
import socket
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import anyio

from worker_runtime import Profiles, Runtime, WorkerRuntimeError
from worker_runtime.cli import (
    Bind,
    StartError,
    add_limit_arguments,
    bind_socket,
    configure_logging,
    parse_bind,
    positive_float,
    positive_int,
    run_until_stopped,
    runtime_limits,
    serve_until_signalled,
    serving_limits,
)
from worker_runtime.models import is_valid_id
from worker_runtime.secretfile import SecretFileError, write_secret
from worker_runtime.store.fs import FsRuntimeStore

from ._transport import ReplyLimits
from .app import BackendSettings, create_backend_app
from .registry import ControlPlane, RemoteLimits, RemoteRecord, RuntimeRegistry
from .sessions import Sessions
from .sources import EmbeddedSource, LocalSource
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
]

DEFAULT_BIND = "127.0.0.1:8700"
EMBEDDED_ID = "backend-internal"


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


def _read_token(path: Path | None, env: str | None, what: str) -> str | None:
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StartError(f"cannot read the {what} token file ({exc.strerror})") from None
        if not token:
            raise StartError(f"the {what} token file is empty")
        return token
    if env is not None:
        token = os.environ.get(env, "").strip()
        if not token:
            raise StartError(f"the environment variable {env} is not set or empty")
        return token
    return None


@dataclass(frozen=True)
class LocalStore:
    root: Path
    display_name: str | None = None


@dataclass
class Config:
    remotes: list[RemoteRecord] = field(default_factory=list)
    local_stores: list[LocalStore] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    public_url: str | None = None


def load_config(path: Path) -> Config:
    """The remote runtimes and local store roots of a config file::

    [[remote]]
    runtime_id = "gpu-box"
    display_name = "GPU box"          # optional
    base_url = "http://10.0.0.5:38800"
    token_file = "/etc/yoi/gpu-box.token"   # or token_env = "GPU_BOX_TOKEN"

    [[local_store]]
    root = "/srv/yoi/old-runtime"      # relative: to the config file's directory
    display_name = "Old runtime"       # optional

    allowed_hosts = ["yoi.example.com"]       # like --allowed-host (top-level keys go first)
    public_url = "https://yoi.example.com"    # like --public-url
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StartError(f"cannot read --config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StartError(f"--config is not valid TOML ({exc})") from None
    unknown = set(data) - {"remote", "local_store", "allowed_hosts", "public_url"}
    if unknown:
        raise StartError(f"--config: unknown key {sorted(unknown)[0]!r}")
    allowed = data.get("allowed_hosts", [])
    if not isinstance(allowed, list) or not all(isinstance(h, str) and h for h in allowed):
        raise StartError("--config: allowed_hosts must be a list of host names")
    public_url = data.get("public_url")
    if public_url is not None and not isinstance(public_url, str):
        raise StartError("--config: public_url must be a string")
    records = []
    for i, entry in enumerate(data.get("remote", [])):
        where = f"--config: remote #{i + 1}"
        if not isinstance(entry, dict):
            raise StartError(f"{where} must be a table")
        extra = set(entry) - {"runtime_id", "display_name", "base_url", "token_file", "token_env"}
        if extra:
            raise StartError(f"{where}: unknown key {sorted(extra)[0]!r}")
        runtime_id = entry.get("runtime_id")
        if not isinstance(runtime_id, str) or not is_valid_id(runtime_id):
            raise StartError(f"{where}: runtime_id is missing or not a valid id")
        if runtime_id == EMBEDDED_ID:
            raise StartError(f"{where}: runtime_id {EMBEDDED_ID!r} is the embedded runtime's")
        base_url = entry.get("base_url")
        if not isinstance(base_url, str):
            raise StartError(f"{where}: base_url is missing")
        token_file = entry.get("token_file")
        token = _read_token(
            Path(token_file) if isinstance(token_file, str) else None,
            entry.get("token_env"),
            f"remote {runtime_id}",
        )
        if token is None:
            raise StartError(f"{where}: token_file or token_env is required")
        records.append(
            RemoteRecord(
                runtime_id=runtime_id,
                display_name=str(entry.get("display_name") or runtime_id),
                base_url=base_url,
                token=token,
            )
        )
    stores = []
    for i, entry in enumerate(data.get("local_store", [])):
        where = f"--config: local_store #{i + 1}"
        if not isinstance(entry, dict):
            raise StartError(f"{where} must be a table")
        extra = set(entry) - {"root", "display_name"}
        if extra:
            raise StartError(f"{where}: unknown key {sorted(extra)[0]!r}")
        root, name = entry.get("root"), entry.get("display_name")
        if not isinstance(root, str) or not root:
            raise StartError(f"{where}: root is missing")
        if name is not None and not isinstance(name, str):
            raise StartError(f"{where}: display_name must be a string")
        stores.append(LocalStore(path.parent / root, name))
    return Config(records, stores, list(allowed), public_url)


async def add_local_stores(registry: RuntimeRegistry, stores: list[LocalStore]) -> None:
    """Show each local store root read-only; one that cannot be read is logged and skipped
    (by its position in the list: its path stays out of the logs too)."""
    for i, store in enumerate(stores):
        try:
            source = await LocalSource.open(store.root, store.display_name)
        except WorkerRuntimeError as exc:
            log.warning("local store #%d is not shown: %s", i + 1, exc.message)
            continue
        registry.add_local(source)


async def run(
    args: argparse.Namespace,
    token: str,
    config: Config,
    sock: socket.socket,
    where: str = "",
) -> None:
    """Serve until SIGTERM/SIGINT; then close the embedded Runtime, end the remote sources'
    streams, and stop."""
    profiles = Profiles.from_toml(args.profiles) if args.profiles else Profiles()
    runtime = Runtime(
        runtime_id=EMBEDDED_ID,
        display_name="Backend (embedded)",
        store=FsRuntimeStore(args.data_dir / "runtime"),
        profiles=profiles,
        limits=runtime_limits(args),
    )
    control = ControlPlane(args.data_dir / "backend.sqlite3")
    try:
        async with runtime, anyio.create_task_group() as tg:
            registry = RuntimeRegistry(control, tg, limits=remote_limits(args))
            registry.add_embedded(EmbeddedSource(runtime, "Backend (embedded)"))
            for record in config.remotes:  # a repeated id is runtime_exists: exit 1
                await registry.add_remote(record, persist=False)
            await registry.load()  # then the remotes registered through the API
            local = config.local_stores + [LocalStore(root) for root in args.local_store]
            await add_local_stores(registry, local)  # last: live sources win
            bind: Bind = args.bind
            settings = BackendSettings(
                token=token,
                max_streams=args.max_streams,
                bound_host=bind.host,
                allowed_hosts=tuple(config.allowed_hosts + args.allowed_host),
                public_url=args.public_url or config.public_url,
                session_idle_s=args.session_idle_s,
                session_max_s=args.session_max_s,
                failed_login_budget=args.failed_login_budget,
            )
            sessions = Sessions(
                control.db, idle_s=settings.session_idle_s, max_s=settings.session_max_s
            )
            if sessions.bind_token(token):
                log.warning("the browser token changed: every browser session was ended")
            app = create_backend_app(registry, settings, sessions)

            async def shut_down() -> None:
                await runtime.close()
                registry.end_streams()

            url = bind.url(sock.getsockname()[1])
            await serve_until_signalled(
                app,
                sock,
                on_signal=shut_down,
                announce=f"yoi workspace backend listening on {url}\n"
                f"open the console: {console_link(settings.public_url or url, token)}\n"
                f"{where}",
                limits=serving_limits(args),
            )
            await registry.aclose()
            tg.cancel_scope.cancel()
    except WorkerRuntimeError as exc:
        raise StartError(exc.message) from None
    finally:
        control.close()


def console_link(base_url: str, token: str) -> str:
    """The console's URL with the token in the fragment (``…/#token=…``)."""
    return f"{base_url.rstrip('/')}/#token={quote(token, safe='')}"


def browser_token(args: argparse.Namespace) -> tuple[str, str]:
    """The browser token and a line saying where it is (a path or an env var's name)."""
    configured = _read_token(args.token_file, args.token_env, "browser")
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
        if args.profiles is not None:
            Profiles.from_toml(args.profiles)
        _check_trust_settings(args, config)
        args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        token, where = browser_token(args)
        sock = bind_socket(args.bind)
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
        return run_until_stopped(prog, run, args, token, config, sock, where, sock=sock)
    finally:
        if record is not None:
            record.unlink(missing_ok=True)


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
