"""``yoi``: the command line of yoi.

``yoi demo`` runs an in-process Runtime (memory store, builtin echo profile), creates a Worker,
sends it input and prints every event of the turn as it streams, then the transcript.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import anyio

from worker_runtime import Limits, Profile, Profiles, Runtime

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yoi", description="yoi: long-lived LLM Workers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a Worker in-process with the echo profile and print its events",
        description=(
            "Start an in-process Runtime, create a Worker on the builtin echo profile (it "
            "echoes input back word by word; it is not a model), send it input and print the "
            "streamed events and the transcript."
        ),
    )
    demo.add_argument(
        "--text",
        default="Hello from yoi. Every word of this input comes back as its own delta.",
        help="the user input to send",
    )
    demo.add_argument(
        "--delay-ms", type=float, default=40.0, help="pause before each echoed word (ms)"
    )
    up = commands.add_parser(
        "up",
        help="start the Workspace Backend with its embedded Runtime",
        description="Start the Workspace Backend (yoi-workspace-server) with its embedded "
        "Runtime, and print its URL.",
    )
    from yoi_workspace_server.cli import add_arguments

    add_arguments(up)
    return parser


async def _demo(text: str, delay_ms: float, out: list[str]) -> None:
    profiles = Profiles(
        [Profile(name="demo-echo", provider="echo", chunk_delay_ms=delay_ms)], default="demo-echo"
    )
    async with Runtime(runtime_id="demo", profiles=profiles, limits=Limits()) as runtime:
        worker = await runtime.create_worker({"name": "demo"})
        ref = worker.worker_ref
        print(f"created worker {ref.worker_id} on profile {worker.profile}", flush=True)
        async with runtime.subscribe(cursor=worker.last_cursor, worker=ref) as events:
            ack = await runtime.send_input(ref, {"content": text})
            print(f"input accepted: turn {ack.turn_id}", flush=True)
            async for event in events:
                print(
                    f"  {event.kind:<18} {json.dumps(event.data, ensure_ascii=False)}", flush=True
                )
                if event.kind in ("turn_completed", "turn_failed", "turn_cancelled"):
                    break
        page = await runtime.read_transcript(ref)
        print("transcript:", flush=True)
        for item in page.items:
            print(f"  #{item.sequence} {item.role:<9} {item.content}", flush=True)
        out.append(page.items[-1].content if page.items else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yoi`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "up":
        from yoi_workspace_server.cli import serve

        return serve(args, "yoi up")
    if args.command == "demo":
        if not args.text.strip():
            print("yoi demo: --text must not be blank", file=sys.stderr)
            return 2
        if args.delay_ms < 0:
            print("yoi demo: --delay-ms must be >= 0", file=sys.stderr)
            return 2
        out: list[str] = []
        anyio.run(_demo, args.text, args.delay_ms, out)
        return 0
    _parser().print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
