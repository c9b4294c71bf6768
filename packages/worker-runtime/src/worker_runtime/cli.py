"""``yoi-runtime``: one Runtime served over HTTP (contract §8).

Bad flags exit 2 with a one-line reason; other start failures (port in use, store locked or
corrupt, unreadable token or profiles) exit 1 with a clear message and no traceback. SIGTERM
and SIGINT shut down gracefully (running turns get the grace period) and exit 0. The token is
never printed or logged: only the path of the file that holds it.

Browsers must never call a Runtime; they go through the Workspace Backend.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import anyio

from ._cliargs import (
    Bind,
    StartError,
    add_limit_arguments,
    parse_bind,
    positive_float,
    positive_int,
    runtime_limits,
    serving_limits,
    write_generated_token,
)
from .errors import MissingExtraError, WorkerRuntimeError
from .models import ID_RULE, is_valid_id
from .profiles import ProfileError, Profiles

#: The argument helpers are shared with the Workspace Backend's process
#: (yoi_workspace_server.cli); serving itself lives in :mod:`worker_runtime.http`.
__all__ = [
    "Bind",
    "StartError",
    "add_limit_arguments",
    "main",
    "parse_bind",
    "positive_float",
    "positive_int",
    "runtime_limits",
    "serving_limits",
    "write_generated_token",
]

log = logging.getLogger("worker_runtime.cli")

DEFAULT_BIND = "127.0.0.1:38800"
TOKEN_ENV_DEFAULT = "YOI_RUNTIME_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Bad flags: one line on stderr, exit 2."""
        self.exit(2, f"yoi-runtime: {message}\n")


class UsageError(Exception):
    """A flag combination that is refused: printed as one line, exit 2."""


def _runtime_id(value: str) -> str:
    if not is_valid_id(value):
        raise argparse.ArgumentTypeError(f"--runtime-id must be {ID_RULE}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="yoi-runtime",
        description="Serve one yoi Runtime over HTTP (REST commands). Browsers must never call "
        "a Runtime directly; they go through the Workspace Backend.",
    )
    parser.add_argument("--runtime-id", type=_runtime_id, default="local", help="default: local")
    parser.add_argument("--display-name", default=None)
    parser.add_argument(
        "--bind", type=parse_bind, default=parse_bind(DEFAULT_BIND), help=f"default {DEFAULT_BIND}"
    )
    parser.add_argument("--store", choices=("memory", "fs"), default="memory")
    parser.add_argument("--data-dir", type=Path, default=None, help="the fs store root")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--token-file", type=Path, default=None, help="file holding the token")
    tokens.add_argument(
        "--token-env", default=None, metavar="VAR", help="environment variable holding the token"
    )
    parser.add_argument("--profiles", type=Path, default=None, help="profiles TOML file")
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="batch")
    parser.add_argument(
        "--store-mode",
        choices=("private", "group"),
        default=None,
        help="fs store permissions: private (default; files 0600, directories 0700) or group "
        "(0640/0750: its group may read the store)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    parser.add_argument(
        "--shutdown-grace-s", type=float, default=10.0, help="grace for running turns on stop"
    )
    parser.add_argument(
        "--no-event-stream",
        action="store_true",
        help="do not serve the SSE event stream (served by default when the event-stream "
        "extra is installed)",
    )
    parser.add_argument(
        "--heartbeat-s",
        type=positive_float,
        default=15.0,
        help="event stream heartbeat interval (default 15)",
    )
    parser.add_argument(
        "--max-streams",
        type=positive_int,
        default=1024,
        help="cap on open event streams; above it a new stream gets 503 (default 1024)",
    )
    add_limit_arguments(parser)
    return parser


def _resolve_token(args: argparse.Namespace) -> tuple[str, str]:
    """The token and a description of where it is (a path, or an env var's name); a generated
    token comes with an empty description: its file is written once the lock and the bind
    are held (:func:`write_generated_token`)."""
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StartError(f"cannot read --token-file ({exc.strerror})") from None
        if not token:
            raise StartError("--token-file is empty")
        return token, f"token file {args.token_file}"
    if args.token_env is not None:
        token = os.environ.get(args.token_env, "").strip()
        if not token:
            raise StartError(f"the environment variable {args.token_env} is not set or empty")
        return token, f"environment variable {args.token_env}"
    if not args.bind.loopback:
        raise UsageError(
            "binding a non-loopback address needs a configured token (--token-file or --token-env)"
        )
    return secrets.token_urlsafe(32), ""


def _generated_token_path(args: argparse.Namespace, port: int) -> Path:
    """Where a generated token goes: ``<data-dir>/runtime.token`` (fs; the store's lock makes
    it this process's), else a per-user runtime directory, keyed by the runtime id and the
    bound port (which this process holds, so no two live processes share a path)."""
    if args.store == "fs":
        return Path(args.data_dir) / "runtime.token"
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"yoi-runtime-{os.getuid()}" / f"{args.runtime_id}-{port}.token"


async def _serve(
    args: argparse.Namespace, token: str, where: str, sock: socket.socket, stop: anyio.Event
) -> None:
    """Open the Runtime, write a generated token file, then serve until ``stop``."""
    from .http import HttpSettings, create_app, serve
    from .runtime import Runtime

    store: Any = None
    if args.store == "fs":
        from .store.fs import STORE_MODES, FsRuntimeStore

        file_mode, dir_mode = STORE_MODES[args.store_mode or "private"]
        store = FsRuntimeStore(
            args.data_dir, fsync=args.fsync, file_mode=file_mode, dir_mode=dir_mode
        )
    profiles = Profiles.from_toml(args.profiles) if args.profiles else Profiles()
    runtime = Runtime(
        runtime_id=args.runtime_id,
        display_name=args.display_name,
        limits=runtime_limits(args, shutdown_grace_s=args.shutdown_grace_s),
        profiles=profiles,
        store=store,
    )
    settings = HttpSettings(
        token=token,
        event_stream=False if args.no_event_stream else None,
        heartbeat_s=args.heartbeat_s,
        max_streams=args.max_streams,
    )
    generated: Path | None = None
    try:
        async with runtime:
            port = sock.getsockname()[1]
            if not where:  # generated: written only now that the lock and the bind are held
                generated = _generated_token_path(args, port)
                where = write_generated_token(generated, token)
            app = create_app(runtime, settings)
            limits = serving_limits(args)
            log.info("serving runtime %s on %s", args.runtime_id, args.bind.url(port))
            print(
                f"yoi-runtime {args.runtime_id} listening on {args.bind.url(port)} "
                f"(store={args.store}); {where}",
                flush=True,
            )
            # The Runtime closes first, while the server still runs: commands get
            # runtime_unavailable, running turns get their grace period, and every event
            # stream gets its final runtime_shutdown notice and ends.
            await serve(app, sock, limits=limits, stop=stop, on_stop=runtime.close)
    except WorkerRuntimeError as exc:  # the store could not be opened (locked, corrupt …)
        raise StartError(exc.message) from None
    finally:
        if generated is not None and args.store == "memory":
            _remove_if_ours(generated, token)  # a memory Runtime's token dies with it
    log.info("runtime %s stopped", args.runtime_id)


def _remove_if_ours(path: Path, token: str) -> None:
    try:
        if path.read_text(encoding="utf-8").strip() == token:
            path.unlink()
    except OSError:
        pass


# The http extra, imported when called, so that this module and ``yoi-runtime --help`` work
# without it.


def bind_socket(bind: Bind) -> socket.socket:
    """:func:`worker_runtime.http.bind_socket`, failing with a :class:`StartError`."""
    from .http import BindError
    from .http import bind_socket as bind_listening

    try:
        return bind_listening(bind.host, bind.port)
    except BindError as exc:
        raise StartError(exc.strerror) from None


def configure_logging(level: str) -> None:
    """:func:`worker_runtime.http.configure_logging`."""
    from .http import configure_logging as configure

    configure(level)


def _exit_code(prog: str, start: Callable[[], None]) -> int:
    """0, or 1 with a one-line message on stderr for a :class:`StartError`."""
    try:
        start()
    except StartError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yoi-runtime`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.store == "fs" and args.data_dir is None:
        parser.error("--store fs needs --data-dir")
    if args.store == "memory" and args.data_dir is not None:
        parser.error("--data-dir is only for --store fs")
    if args.store == "memory" and args.store_mode is not None:
        parser.error("--store-mode is only for --store fs")
    try:
        import worker_runtime.http

        if args.store == "fs":
            import worker_runtime.store.fs  # noqa: F401
    except MissingExtraError as exc:
        print(f"yoi-runtime: {exc.message}", file=sys.stderr)
        return 1
    configure_logging(args.log_level)
    try:
        if args.profiles is not None:
            Profiles.from_toml(args.profiles)  # fail before binding
        if args.data_dir is not None:  # the store's own root: private unless --store-mode
            mode = 0o750 if args.store_mode == "group" else 0o700
            args.data_dir.mkdir(mode=mode, parents=True, exist_ok=True)
        token, where = _resolve_token(args)
        sock = bind_socket(args.bind)
    except UsageError as exc:
        print(f"yoi-runtime: {exc}", file=sys.stderr)
        return 2
    except ProfileError as exc:
        print(f"yoi-runtime: {exc.message}", file=sys.stderr)
        return 1
    except (StartError, OSError) as exc:
        print(f"yoi-runtime: {exc}", file=sys.stderr)
        return 1
    from .http import run

    return _exit_code(
        "yoi-runtime", lambda: run(partial(_serve, args, token, where, sock), sock=sock)
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
