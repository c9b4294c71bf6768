"""``yoi``: the command line of yoi (``docs/cli.md``).

Commands drive Workers on a Workspace Backend (default: the local ``yoi up``) or, with
``--runtime-url``, on one ``yoi-runtime`` directly, through :mod:`yoi._api`. ``yoi demo`` runs
an in-process Runtime; ``yoi up`` serves the Backend. Modules beyond Click load only when a
command needs them, so ``yoi --help`` stays fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from ._clikit import Failure, _connection, _json, _run, api_command
from ._output import EXIT
from ._workercmds import attach, cancel, chat, new, send, stop, transcript

if TYPE_CHECKING:
    from ._api import Api

__all__ = ["main"]

_EPILOG = (
    "Exit codes: 0 ok, 1 error, 2 usage, 3 turn failed, 4 turn cancelled, 5 turn "
    "interrupted, 6 worker busy, 7 not found, 8 ambiguous name, 9 auth failed, 10 "
    "unreachable, 11 worker stopped, 130 interrupted by Ctrl-C."
)


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


# -- one Worker (the commands live in ._workercmds) ----------------------------------------

for _command in (new, send, attach, cancel, stop, transcript, chat):
    cli.add_command(_command)


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
