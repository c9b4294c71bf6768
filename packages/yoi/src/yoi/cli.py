"""``yoi``: the command line of yoi (``docs/cli.md``).

Commands drive Workers on a Workspace Backend (default: the local ``yoi up``) or, with
``--runtime-url``, on one ``yoi-runtime`` directly, through :mod:`yoi._api`. ``yoi demo`` runs
an in-process Runtime; ``yoi up`` serves the Backend. Modules beyond Click load only when a
command needs them, so ``yoi --help`` stays fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._output import EXIT

if TYPE_CHECKING:
    from ._api import Api, Ref

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
_EPILOG = (
    "Exit codes: 0 ok, 1 error, 2 usage, 3 turn failed, 4 turn cancelled, 5 turn "
    "interrupted, 6 worker busy, 7 not found, 8 ambiguous name, 9 auth failed, 10 "
    "unreachable, 11 worker stopped, 130 interrupted by Ctrl-C."
)


class Failure(Exception):
    """A failure already worded for the user: print one line, exit with ``exit_code``."""

    def __init__(self, code: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.code, self.message, self.exit_code = code, message, exit_code


def _connection(f: F, *, caller_token: bool = True) -> F:
    """The options every API command takes; they land in ``ctx.obj``.

    ``caller_token=False`` leaves out ``--token-file``, for ``runtimes add``, whose own
    ``--token-file`` is the remote Runtime's token; the caller's token is then given before
    the subcommand (``yoi runtimes --token-file F add …``) or by ``YOI_TOKEN_FILE``.
    """

    def store(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
        def callback(ctx: click.Context, _p: click.Parameter, value: Any) -> Any:
            obj = ctx.ensure_object(dict)
            if value is not None or key not in obj:
                obj[key] = value
            return value

        return callback

    options = [
        click.option(
            "--backend",
            metavar="URL",
            help="a Backend's URL (env YOI_BACKEND_URL)",
            expose_value=False,
            callback=store("backend"),
        ),
        click.option(
            "--runtime-url",
            metavar="URL",
            expose_value=False,
            callback=store("runtime_url"),
            help="talk to one yoi-runtime directly (env YOI_RUNTIME_URL)",
        ),
        click.option(
            "--token-file",
            metavar="FILE",
            expose_value=False,
            callback=store("token_file"),
            help="the token yoi itself sends (env YOI_TOKEN_FILE)",
        ),
        click.option(
            "--data-dir",
            metavar="DIR",
            expose_value=False,
            callback=store("data_dir"),
            help="the local yoi up's data dir (env YOI_DATA_DIR; default ./.yoi)",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            default=None,
            expose_value=False,
            callback=store("json"),
            help="JSON documents; streams as NDJSON",
        ),
    ]
    if not caller_token:
        del options[2]
    for option in reversed(options):
        f = option(f)
    return f


def _api() -> tuple[Api, str]:
    from ._api import ApiError
    from ._connect import Target, connect

    obj = click.get_current_context().ensure_object(dict)
    target = Target(
        obj.get("backend"), obj.get("runtime_url"), obj.get("token_file"), obj.get("data_dir")
    )
    try:
        return connect(target)
    except ApiError as exc:
        raise _failure(exc, "") from None


def _json() -> bool:
    return bool(click.get_current_context().ensure_object(dict).get("json"))


def _failure(exc: Exception, hint: str) -> Failure:
    from ._output import exit_code_of

    code = getattr(exc, "code", "error")
    message = getattr(exc, "message", str(exc))
    if code == "unreachable" and hint:
        message = f"{message}; {hint}"
    return Failure(code, message, exit_code_of(code))


def api_command(f: Callable[..., int | None], *, caller_token: bool = True) -> Callable[..., int]:
    """Run ``f(api, …)``: typed errors become one line and their exit code."""

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> int:
        return _run(f, **kwargs)

    return _connection(wrapper, caller_token=caller_token)


def _run(f: Callable[..., int | None], **kwargs: Any) -> int:
    from ._api import ApiError

    api, hint = _api()
    try:
        return f(api, **kwargs) or 0
    except ApiError as exc:
        raise _failure(exc, hint) from None
    finally:
        api.close()


def _complete_worker(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    from ._api import ApiError
    from ._connect import Target, connect

    obj = ctx.ensure_object(dict)
    try:
        api, _ = connect(
            Target(
                obj.get("backend"),
                obj.get("runtime_url"),
                obj.get("token_file"),
                obj.get("data_dir"),
            )
        )
        rows = api.workers()
    except ApiError:
        return []
    out = []
    for w in rows:
        for value in (f"{w['runtime_id']}/{w['worker_id']}", w.get("name")):
            if value and value.startswith(incomplete):
                out.append(click.shell_completion.CompletionItem(value, help=w.get("status")))
    return out


WORKER = click.argument("worker", shell_complete=_complete_worker)


def resolve(api: Api, text: str) -> Ref:
    """``RUNTIME/WORKER_ID``, a unique worker_id prefix, or a unique name."""
    from ._api import ApiError, Ref

    if not text or text.endswith("/") or text.startswith("/"):
        raise ApiError("invalid_input", f"{text!r} names no Worker")
    if "/" in text:
        runtime_id, _, wanted = text.partition("/")
        rows = api.workers(runtime=runtime_id)
    else:
        runtime_id, wanted = "", text
        rows = api.workers()
    exact = [w for w in rows if w["worker_id"] == wanted]
    if exact:
        matches = exact
    else:
        named = [w for w in rows if w.get("name") == wanted]
        prefixed = [w for w in rows if w["worker_id"].startswith(wanted)]
        matches = list({(w["runtime_id"], w["worker_id"]): w for w in named + prefixed}.values())
    if not matches:
        where = f" on runtime {runtime_id}" if runtime_id else ""
        raise ApiError("worker_not_found", f"no Worker {wanted!r}{where}")
    if len(matches) > 1:
        names = ", ".join(
            f"{w['runtime_id']}/{w['worker_id']}" + (f" ({w['name']})" if w.get("name") else "")
            for w in matches
        )
        raise ApiError("ambiguous_worker", f"{text!r} matches {len(matches)} Workers: {names}")
    w = matches[0]
    return Ref(str(w["runtime_id"]), str(w["worker_id"]))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
)
@click.version_option(package_name="yoi", message="yoi %(version)s")
@_connection
def cli() -> None:
    """yoi: long-lived LLM Workers, from the shell.

    Talks to the local `yoi up` by default (its data dir ./.yoi holds the URL and token);
    --backend URL picks another Backend, --runtime-url URL one yoi-runtime directly.
    The connection options go before or after the command name; `runtimes add`'s own
    --token-file is the remote Runtime's token.
    WORKER is RUNTIME/WORKER_ID, a unique worker_id prefix, or a unique name.
    """


# -- runtimes ------------------------------------------------------------------------------


@cli.group("runtimes", invoke_without_command=True)
@_connection
@click.pass_context
def runtimes(ctx: click.Context) -> int:
    """List the runtimes with their status and reason (add and rm manage remote ones)."""
    if ctx.invoked_subcommand is None:
        return _run(_list_runtimes)
    return 0


def _list_runtimes(api: Api) -> int:
    from ._output import print_json, table

    rows = api.runtimes()
    if _json():
        print_json({"runtimes": rows})
        return 0
    table(
        ["RUNTIME", "KIND", "STATUS", "NAME", "REASON"],
        [
            [r.get("runtime_id"), r.get("kind"), r.get("status"), r.get("display_name"), _reason(r)]
            for r in rows
        ],
    )
    return 0


def _reason(runtime: dict[str, Any]) -> str:
    for d in runtime.get("diagnostics") or []:
        if isinstance(d, dict) and d.get("code") and d.get("severity") != "info":
            reason = (d.get("details") or {}).get("reason")
            return f"{d['code']}" + (f" ({reason})" if reason else "")
    return str(runtime.get("reason") or "")


@runtimes.command("add")
@click.argument("runtime_id")
@click.argument("url")
@click.option(
    "--token-file",
    "--runtime-token-file",
    "--remote-token-file",
    "remote_token",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="the remote yoi-runtime's token file (the Backend keeps the token)",
)
@click.option("--name", default=None, help="a display name")
@functools.partial(api_command, caller_token=False)
def runtimes_add(api: Api, runtime_id: str, url: str, remote_token: str, name: str | None) -> int:
    """Register the yoi-runtime at URL as RUNTIME_ID on the Backend.

    Here --token-file is the remote Runtime's token file. The token yoi itself uses to reach
    the Backend goes before the subcommand (yoi runtimes --token-file F add …) or in
    YOI_TOKEN_FILE; by default it is the local data dir's backend.token.
    """
    from pathlib import Path

    from ._output import print_json

    try:
        token = Path(remote_token).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise Failure("usage", f"cannot read {remote_token} ({exc.strerror})", 2) from None
    runtime = api.add_runtime(runtime_id, url, token, name)
    if _json():
        print_json({"runtime": runtime})
    else:
        print(f"{runtime.get('runtime_id')}\t{runtime.get('status')}")
    return 0


@runtimes.command("rm")
@click.argument("runtime_id")
@api_command
def runtimes_rm(api: Api, runtime_id: str) -> int:
    """Unregister the remote runtime RUNTIME_ID (its Workers stay on it)."""
    from ._output import print_json

    api.remove_runtime(runtime_id)
    if _json():
        print_json({"removed": runtime_id})
    else:
        print(f"removed {runtime_id}", file=sys.stderr)
    return 0


# -- workers and profiles ------------------------------------------------------------------


@cli.command("workers")
@click.option("--runtime", "-r", default=None, help="only this runtime's Workers")
@click.option("--status", "-s", type=click.Choice(["idle", "running", "stopped"]), default=None)
@api_command
def workers(api: Api, runtime: str | None, status: str | None) -> int:
    """List Workers (every runtime's, or one's)."""
    from ._output import print_json, table

    rows = api.workers(runtime=runtime, status=status)
    if _json():
        print_json({"workers": rows})
        return 0
    table(
        ["WORKER", "NAME", "STATUS", "PROFILE", "ENTRIES", "QUEUED"],
        [
            [
                f"{w['runtime_id']}/{w['worker_id']}",
                w.get("name"),
                w.get("status"),
                w.get("profile"),
                w.get("transcript_len"),
                w.get("queued_inputs"),
            ]
            for w in rows
        ],
    )
    return 0


@cli.command("profiles")
@click.option("--runtime", "-r", default=None, help="default: the embedded (or the only) runtime")
@api_command
def profiles(api: Api, runtime: str | None) -> int:
    """List the profiles a Worker may be created on."""
    from ._output import print_json, table

    rows = api.runtime(runtime or api.default_runtime()).list_profiles()
    if _json():
        print_json({"profiles": rows})
        return 0
    table(
        ["PROFILE", "KIND", "PROVIDER", "MODEL", "DEFAULT"],
        [
            [
                p.get("name"),
                p.get("kind"),
                p.get("provider"),
                p.get("model"),
                "*" if p.get("is_default") else "",
            ]
            for p in rows
        ],
    )
    return 0


# -- one Worker ----------------------------------------------------------------------------


def _selector(profile: str | None) -> dict[str, str] | None:
    if profile is None:
        return None
    if profile.startswith("builtin:"):
        return {"kind": "builtin", "name": profile.removeprefix("builtin:")}
    return {"kind": "named", "name": profile}


@cli.command("new")
@click.option("--runtime", "-r", default=None, help="default: the embedded (or the only) runtime")
@click.option(
    "--profile",
    "-p",
    default=None,
    help="a named profile, or builtin:NAME (default: the runtime's default)",
)
@click.option("--name", "-n", default=None, help="a display name")
@click.argument("text", required=False)
@api_command
def new(
    api: Api, runtime: str | None, profile: str | None, name: str | None, text: str | None
) -> int:
    """Create a Worker and print its ref; with TEXT, also stream its reply."""
    from ._api import Ref
    from ._output import print_json

    body: dict[str, Any] = {}
    if name:
        body["name"] = name
    if profile:
        body["profile"] = _selector(profile)
    rid = runtime or api.default_runtime()
    if text is not None and not text.strip():
        raise Failure("usage", "TEXT must not be blank", 2)
    worker = api.runtime(rid).create_worker(body)
    ref = Ref(str(worker["runtime_id"]), str(worker["worker_id"]))
    if _json():
        if text is None:
            print_json({"worker": worker})
            return 0
        print(_compact({"worker": worker}), flush=True)
    else:
        print(ref, file=sys.stderr if text is not None else sys.stdout, flush=True)
    if text is None:
        return 0
    return _send(api, ref, text, queue=False, cursor=worker.get("last_cursor"))


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _send(api: Api, ref: Ref, text: str, *, queue: bool, cursor: str | None = None) -> int:
    from ._api import StreamState
    from ._output import Renderer

    renderer = Renderer(as_json=_json(), echo_inputs=False)
    renderer.spinner.start("waiting for the first words")
    try:
        body = {"content": text, "on_busy": "enqueue" if queue else "reject"}
        ack = api.runtime(ref.runtime_id).send_input(ref.worker_id, body)
        if _json():
            print(_compact({"ack": ack}), flush=True)
        elif ack.get("queued"):
            renderer.note("queued behind the running turn")
        turn = ack.get("turn_id")
        state = StreamState(ack.get("cursor"))
        for kind, event in api.follow(ref, state):
            if event.get("turn_id") not in (None, turn):
                continue
            outcome = renderer.feed(kind, event)
            if outcome is not None:
                return EXIT[outcome]
            if kind == "worker_stopped":
                return EXIT["cancelled"]
    except KeyboardInterrupt:
        renderer.spinner.stop()
        return EXIT["sigint"]
    finally:
        renderer.spinner.stop()
    return EXIT["error"]  # pragma: no cover - the stream follows until the turn ends


@cli.command("send")
@WORKER
@click.argument("text")
@click.option(
    "--queue", "-q", is_flag=True, help="queue behind a running turn (default: fail with exit 6)"
)
@api_command
def send(api: Api, worker: str, text: str, queue: bool) -> int:
    """Send TEXT to WORKER and stream the reply to stdout as it arrives."""
    if not text.strip():
        raise Failure("usage", "TEXT must not be blank", 2)
    return _send(api, resolve(api, worker), text, queue=queue)


@cli.command("attach")
@WORKER
@click.option("--from-start", is_flag=True, help="replay from the Worker's first input")
@click.option("--cursor", "-c", default=None, help="replay after this cursor")
@api_command
def attach(api: Api, worker: str, from_start: bool, cursor: str | None) -> int:
    """Replay, then follow WORKER live (Ctrl-C leaves; the Worker keeps running).

    Without --from-start or --cursor it starts at the running turn's input (or with new
    events when idle). Across network drops and server restarts it resumes after the last
    event it printed: nothing is missed and nothing repeats.
    """
    from ._api import StreamState
    from ._output import Renderer

    if from_start and cursor:
        raise Failure("usage", "--from-start and --cursor exclude each other", 2)
    ref = resolve(api, worker)
    renderer = Renderer(as_json=_json(), echo_inputs=True)
    start = cursor
    if cursor is None:
        detail = api.runtime(ref.runtime_id).get_worker(ref.worker_id)
        start = detail.get("last_cursor")
        first = None
        if detail.get("status") == "stopped" and not from_start:
            print(
                f"yoi: {ref} is stopped: nothing to follow (--from-start replays it)",
                file=sys.stderr,
            )
            return 0
        if from_start:
            page = api.runtime(ref.runtime_id).read_transcript(ref.worker_id, start=0, limit=1)
            first = page["items"][0] if page["items"] else None
        elif detail.get("status") == "running":
            first = _running_input(api, ref, detail)
        if first is not None:
            start = first["cursor"]
            # The entry the stream starts after: printed here, from the transcript.
            renderer.feed(
                "input_accepted",
                {
                    "cursor": first["cursor"],
                    "kind": "input_accepted",
                    "runtime_id": ref.runtime_id,
                    "worker_id": ref.worker_id,
                    "turn_id": first.get("turn_id"),
                    "at": first.get("at"),
                    "data": {
                        "input_kind": first["role"],
                        "content": first["content"],
                        "transcript_sequence": first["sequence"],
                        "queued": False,
                    },
                },
            )
    state = StreamState(start)
    try:
        for kind, event in api.follow(ref, state):
            renderer.feed(kind, event)
            if kind == "worker_stopped":
                return 0
    except KeyboardInterrupt:
        return EXIT["sigint"]
    return 0  # pragma: no cover


def _running_input(api: Api, ref: Ref, detail: dict[str, Any]) -> dict[str, Any] | None:
    """The transcript entry of the running turn's input."""
    total = int(detail.get("transcript_len") or 0)
    active = detail.get("active_turn_id")
    page = api.runtime(ref.runtime_id).read_transcript(
        ref.worker_id, start=max(0, total - 20), limit=20
    )
    for item in reversed(page["items"]):
        if item.get("turn_id") == active and item.get("role") == "user":
            return dict(item)
    return None


@cli.command("cancel")
@WORKER
@api_command
def cancel(api: Api, worker: str) -> int:
    """Cancel WORKER's running turn (the Worker stays; queued input then runs)."""
    from ._output import print_json

    ref = resolve(api, worker)
    ack = api.runtime(ref.runtime_id).cancel(ref.worker_id)
    if _json():
        print_json({"ack": ack})
    elif ack.get("cancelled_turn_id"):
        print(f"cancelled {ack['cancelled_turn_id']}", file=sys.stderr)
    else:
        print("no turn was running", file=sys.stderr)
    return 0


@cli.command("stop")
@WORKER
@api_command
def stop(api: Api, worker: str) -> int:
    """Stop WORKER for good (its running turn is cancelled, queued input discarded)."""
    from ._output import print_json

    ref = resolve(api, worker)
    ack = api.runtime(ref.runtime_id).stop_worker(ref.worker_id)
    if _json():
        print_json({"ack": ack})
    else:
        print(
            f"stopped {ack['worker_ref']['runtime_id']}/{ack['worker_ref']['worker_id']}",
            file=sys.stderr,
        )
    return 0


@cli.command("transcript")
@WORKER
@click.option("--all", "everything", is_flag=True, help="every entry (pages through them)")
@click.option("--start", type=click.IntRange(min=0), default=None, help="0-based offset")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="entries per page")
@api_command
def transcript(
    api: Api, worker: str, everything: bool, start: int | None, limit: int | None
) -> int:
    """Print WORKER's transcript (default: the last 50 entries)."""
    from ._output import print_json, transcript_lines

    ref = resolve(api, worker)
    runtime = api.runtime(ref.runtime_id)
    if everything or start is not None:
        at: int | None = start or 0
        items: list[Any] = []
        page: dict[str, Any] = {}
        while at is not None:
            page = runtime.read_transcript(ref.worker_id, start=at, limit=limit)
            items.extend(page["items"])
            at = page.get("next_start") if everything else None
        page = {**page, "start": start or 0, "items": items}
        if everything:
            page["next_start"] = None
    else:
        total = int(runtime.get_worker(ref.worker_id).get("transcript_len") or 0)
        count = limit or 50
        page = runtime.read_transcript(ref.worker_id, start=max(0, total - count), limit=count)
    if _json():
        print_json({"transcript": page})
        return 0
    for line in transcript_lines(page["items"]):
        sys.stdout.write(line + "\n")
    return 0


@cli.command("chat")
@click.argument("worker", required=False, shell_complete=_complete_worker)
@click.option("--new", "create", is_flag=True, help="chat with a new Worker")
@click.option("--runtime", "-r", default=None, help="with --new: the runtime")
@click.option("--profile", "-p", default=None, help="with --new: the profile")
@click.option("--name", "-n", default=None, help="with --new: a display name")
@api_command
def chat(
    api: Api,
    worker: str | None,
    create: bool,
    runtime: str | None,
    profile: str | None,
    name: str | None,
) -> int:
    """Talk to WORKER (or --new) interactively.

    Ctrl-C cancels the running turn; a second Ctrl-C at an idle prompt leaves; Ctrl-D
    detaches (the Worker keeps running). /cancel /stop /transcript /help.
    """
    from ._api import Ref
    from ._chat import Chat

    if (worker is None) == (not create):
        raise Failure("usage", "give WORKER or --new (not both)", 2)
    if create:
        body: dict[str, Any] = {"name": name} if name else {}
        if profile:
            body["profile"] = _selector(profile)
        w = api.runtime(runtime or api.default_runtime()).create_worker(body)
        ref = Ref(str(w["runtime_id"]), str(w["worker_id"]))
    else:
        assert worker is not None
        ref = resolve(api, worker)
    return Chat(api, ref).run()


# -- completion, demo, up ------------------------------------------------------------------


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(yoi completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "yoi", "_YOI_COMPLETE").source())


_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@cli.command("demo", context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> int:
    """Run a Worker in-process with the echo profile and print its events."""
    from ._demo import demo_main

    return demo_main(list(args))


@cli.command("up", context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def up(args: tuple[str, ...]) -> int:
    """Start the Workspace Backend with its embedded Runtime (yoi up --help)."""
    from ._demo import up_main

    return up_main(list(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yoi`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args, prog_name="yoi", standalone_mode=False)
    except Failure as exc:
        print(f"yoi: {exc.code}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT["usage"]
    except click.exceptions.Abort:
        return EXIT["sigint"]
    except KeyboardInterrupt:
        return EXIT["sigint"]
    except BrokenPipeError:
        return EXIT["error"]
    except Exception as exc:  # a bug: one line, never a traceback
        print(f"yoi: internal_error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT["error"]
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
