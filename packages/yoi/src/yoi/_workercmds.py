"""The ``yoi`` commands on one Worker: ``new``, ``send``, ``attach``, ``cancel``, ``stop``,
``transcript`` and ``chat``. :mod:`yoi.cli` adds them to its group."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ._clikit import WORKER, Failure, _complete_worker, _json, api_command, resolve
from ._output import EXIT

if TYPE_CHECKING:
    from ._api import Api, Ref


def _selector(profile: str | None) -> dict[str, str] | None:
    if profile is None:
        return None
    if profile.startswith("builtin:"):
        return {"kind": "builtin", "name": profile.removeprefix("builtin:")}
    return {"kind": "named", "name": profile}


@click.command("new")
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


@click.command("send")
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


@click.command("attach")
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


@click.command("cancel")
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


@click.command("stop")
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


@click.command("transcript")
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


@click.command("chat")
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
