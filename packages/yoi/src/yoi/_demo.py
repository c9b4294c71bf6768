"""``yoi demo`` (an in-process Runtime, the echo profile) and ``yoi up`` (the Backend)."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["demo_main", "up_main"]


def _demo_parser() -> argparse.ArgumentParser:
    demo = argparse.ArgumentParser(
        prog="yoi demo",
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
    return demo


async def _demo(text: str, delay_ms: float) -> None:
    from worker_runtime import Limits, Profile, Profiles, Runtime

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


def demo_main(argv: list[str]) -> int:
    try:
        args = _demo_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not args.text.strip():
        print("yoi demo: --text must not be blank", file=sys.stderr)
        return 2
    if args.delay_ms < 0:
        print("yoi demo: --delay-ms must be >= 0", file=sys.stderr)
        return 2
    import anyio

    anyio.run(_demo, args.text, args.delay_ms)
    return 0


def up_main(argv: list[str]) -> int:
    from yoi_workspace_server.cli import build_parser, serve

    try:
        args = build_parser("yoi up").parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return serve(args, "yoi up")
