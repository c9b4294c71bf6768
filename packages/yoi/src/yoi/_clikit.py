"""The plumbing every ``yoi`` command shares: the connection options, the API connection,
failures worded for the user with their exit codes, and naming a Worker (completion and
resolution). Only Click is imported here; the rest loads when a command runs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ._api import Api, Ref

F = TypeVar("F", bound=Callable[..., Any])


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
