"""``yoi-runtime``: one Runtime served over HTTP (SPEC §8).

Bad flags exit 2 with a one-line reason; other start failures (port in use, store locked or
corrupt, unreadable token or profiles) exit 1 with a clear message and no traceback. SIGTERM
and SIGINT shut down gracefully (running turns get the grace period) and exit 0. The token is
never printed or logged: only the path of the file that holds it.

Browsers must never call a Runtime; they go through the Workspace Backend.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
from anyio.abc import TaskStatus

from .errors import MissingExtraError, WorkerRuntimeError
from .models import ID_RULE, Limits, is_valid_id
from .profiles import ProfileError, Profiles

#: Shared with the Workspace Backend's process (yoi_workspace_server.cli).
__all__ = [
    "Bind",
    "StartError",
    "bind_socket",
    "configure_logging",
    "main",
    "parse_bind",
    "run_until_stopped",
    "serve_until_signalled",
]

log = logging.getLogger("worker_runtime.cli")

DEFAULT_BIND = "127.0.0.1:38800"
TOKEN_ENV_DEFAULT = "YOI_RUNTIME_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Bad flags: one line on stderr, exit 2."""
        self.exit(2, f"yoi-runtime: {message}\n")


class StartError(Exception):
    """A start failure: printed as one line, exit 1."""


class UsageError(Exception):
    """A flag combination that is refused: printed as one line, exit 2."""


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
        type=_positive_float,
        default=15.0,
        help="event stream heartbeat interval (default 15)",
    )
    parser.add_argument(
        "--max-streams",
        type=_positive_int,
        default=1024,
        help="cap on open event streams; above it a new stream gets 503 (default 1024)",
    )
    return parser


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return int(value)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line. Messages never carry secrets: nothing logs the token."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["error"] = type(record.exc_info[1]).__name__
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _resolve_token(args: argparse.Namespace) -> tuple[str, str]:
    """The token and a description of where it is (a path, or an env var's name)."""
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
    token = secrets.token_urlsafe(32)
    if args.store == "fs":
        path = args.data_dir / "runtime.token"
    else:
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        path = Path(base) / f"yoi-runtime-{os.getuid()}" / f"{args.runtime_id}.token"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise StartError(f"cannot write the generated token file ({exc.strerror})") from None
    return token, f"generated token file {path}"


def bind_socket(bind: Bind) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so, and without it every response waits on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind.host, bind.port))
    except OSError as exc:
        sock.close()
        if exc.errno == 98:
            raise StartError(f"cannot bind {bind.host}:{bind.port}: the port is in use") from None
        raise StartError(f"cannot bind {bind.host}:{bind.port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _serve(args: argparse.Namespace, token: str, where: str, sock: socket.socket) -> None:
    from .runtime import Runtime

    store: Any = None
    if args.store == "fs":
        from .store.fs import FsRuntimeStore

        store = FsRuntimeStore(args.data_dir, fsync=args.fsync)
    profiles = Profiles.from_toml(args.profiles) if args.profiles else Profiles()
    runtime = Runtime(
        runtime_id=args.runtime_id,
        display_name=args.display_name,
        limits=Limits(shutdown_grace_s=args.shutdown_grace_s),
        profiles=profiles,
        store=store,
    )
    try:
        async with runtime:
            await _serve_app(args, runtime, token, where, sock)
    except WorkerRuntimeError as exc:  # the store could not be opened (locked, corrupt …)
        raise StartError(exc.message) from None
    log.info("runtime %s stopped", args.runtime_id)


async def _serve_app(
    args: argparse.Namespace, runtime: Any, token: str, where: str, sock: socket.socket
) -> None:

    from .http import HttpSettings, create_app

    settings = HttpSettings(
        token=token,
        event_stream=False if args.no_event_stream else None,
        heartbeat_s=args.heartbeat_s,
        max_streams=args.max_streams,
    )
    app = create_app(runtime, settings)
    port = sock.getsockname()[1]
    log.info("serving runtime %s on %s", args.runtime_id, args.bind.url(port))
    # The Runtime closes first, while the server still runs: commands get
    # runtime_unavailable, running turns get their grace period, and every event stream
    # gets its final runtime_shutdown notice and ends.
    await serve_until_signalled(
        app,
        sock,
        on_signal=runtime.close,
        announce=f"yoi-runtime {args.runtime_id} listening on {args.bind.url(port)} "
        f"(store={args.store}); {where}",
    )


async def serve_until_signalled(
    app: Any, sock: socket.socket, *, on_signal: Callable[[], Awaitable[None]], announce: str
) -> None:
    """Serve ``app`` with uvicorn on the bound ``sock`` until SIGTERM or SIGINT. The signal
    handlers are in place before ``announce`` is printed; on a signal ``on_signal()`` runs
    while the server still answers, then the server stops."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        proxy_headers=False,  # never trust X-Forwarded-*: no proxy is configured
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


def run_until_stopped(
    prog: str, serve: Callable[..., Awaitable[None]], *args: Any, sock: socket.socket
) -> int:
    """Run ``serve(*args)`` on the event loop (uvloop when installed); the exit code: 1 with a
    one-line message for a :class:`StartError`, else 0. Closes ``sock`` either way."""
    try:
        anyio.run(serve, *args, backend_options=_loop_options())
    except StartError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    return 0


def _loop_options() -> dict[str, Any]:
    """uvloop when it is installed (the http-server extra brings it where it exists)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn without its own signal handling: the CLI owns SIGTERM/SIGINT, so that the
        Runtime closes gracefully and the process exits 0."""

        def install_signal_handlers(self) -> None:  # older uvicorn
            return None

        def capture_signals(self) -> Any:  # newer uvicorn
            import contextlib

            return contextlib.nullcontext()

    return Server


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yoi-runtime`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.store == "fs" and args.data_dir is None:
        parser.error("--store fs needs --data-dir")
    if args.store == "memory" and args.data_dir is not None:
        parser.error("--data-dir is only for --store fs")
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
        if args.data_dir is not None:
            args.data_dir.mkdir(parents=True, exist_ok=True)
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
    return run_until_stopped("yoi-runtime", _serve, args, token, where, sock, sock=sock)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
