"""A child process for the crash loop and the failpoint tests.

It opens an fs store, checks that everything the test says was acknowledged in earlier
lifetimes is there exactly once and in order (transcripts, create keys, cursor resume from
every earlier lifetime, one end per turn, no Worker left running), prints ``verified``, then
runs a seeded mix of commands on several Workers, printing each acknowledgement as one JSON
line the moment it returns, until it is killed (or prints ``done`` and waits).

Usage: python fs_crash_driver.py ROOT EXPECTED_JSON SEED OPS [MAX_SEGMENTS]
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import anyio

from worker_runtime import (
    CursorExpired,
    Limits,
    Profile,
    Profiles,
    Runtime,
    WorkerRuntimeError,
)
from worker_runtime.store.fs import FsRuntimeStore

ENDS = {"turn_completed", "turn_failed", "turn_cancelled", "turn_interrupted", "input_discarded"}
SLOW = {"kind": "named", "name": "slow"}


def say(value: Any) -> None:
    print(json.dumps(value) if not isinstance(value, str) else value, flush=True)


async def events_after(rt: Runtime, wid: str, cursor: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = await rt.read_events(cursor=cursor, limit=1000, worker=rt.ref(wid))
        if not page.events:
            return out
        out.extend(page.events)
        cursor = page.next_cursor


async def transcript(rt: Runtime, wid: str) -> list[str]:
    items: list[str] = []
    start: int | None = 0
    while start is not None:
        page = await rt.read_transcript(rt.ref(wid), start=start, limit=256)
        items.extend(i.content for i in page.items if i.role in ("user", "system"))
        start = page.next_start
    return items


async def verify(rt: Runtime, expected: dict[str, Any], pruned: bool) -> list[str]:
    problems: list[str] = []
    workers: dict[str, Any] = expected["workers"]
    with anyio.move_on_after(20):  # every queued turn runs and ends; none is left running
        while [w for w in workers if (await rt.get_worker(rt.ref(w))).status == "running"]:
            await anyio.sleep(0.02)
    for wid, content, index in expected["maybe"]:
        # An input in flight when the process died (never acknowledged) may have landed:
        # then it must be exactly once, where it was sent; either way it is now settled.
        if content in await transcript(rt, wid):
            workers[wid]["inputs"].insert(index, content)
            say({"op": "adopt", "worker": wid, "content": content, "index": index})
        else:
            say({"op": "drop", "worker": wid, "content": content})
    for wid, exp in workers.items():
        detail = await rt.get_worker(rt.ref(wid))
        if detail.status == "running":
            problems.append(f"{wid} stuck running")
        if exp["stopped"] and detail.status != "stopped":
            problems.append(f"{wid} should be stopped, is {detail.status}")
        got = await transcript(rt, wid)
        if got != exp["inputs"]:
            problems.append(f"{wid} transcript {got} != acked {exp['inputs']}")
        if pruned:
            continue
        events = await events_after(rt, wid, exp["from"])
        accepted = [e for e in events if e["kind"] == "input_accepted"]
        if [e["data"]["content"] for e in accepted] != exp["inputs"]:
            problems.append(f"{wid} events from creation miss or repeat inputs")
        turns = [e["turn_id"] for e in accepted if e["data"]["input_kind"] == "user"]
        ends = [e["turn_id"] for e in events if e["kind"] in ENDS]
        for turn_id in turns:
            if ends.count(turn_id) != 1:
                problems.append(f"{wid} turn {turn_id} ended {ends.count(turn_id)} times")
    if not pruned:
        for wid, cursor, seen in expected["cursors"]:
            try:
                events = await events_after(rt, wid, cursor)
            except CursorExpired:
                problems.append(f"cursor of {wid} expired")
                continue
            contents = [e["data"]["content"] for e in events if e["kind"] == "input_accepted"]
            if contents != workers[wid]["inputs"][seen:]:
                problems.append(f"resume of {wid} from an old cursor is not exact")
    for key, wid in expected["creates"].items():
        again = await rt.create_worker({"name": key, "idempotency_key": key, "profile": SLOW})
        if again.worker_id != wid:
            problems.append(f"create key {key} made a new Worker")
    return problems


async def main(root: str, expected_path: str, seed: int, ops: int, max_segments: int) -> None:
    expected = json.loads(await anyio.Path(expected_path).read_text())
    profiles = Profiles([Profile(name="slow", provider="echo", chunk_delay_ms=2)], default="slow")
    rng = random.Random(seed)
    store = FsRuntimeStore(
        root,
        segment_max_events=40,
        max_segments=max_segments or None,
        # Often a checkpoint lags far behind the log, so recovery must replay across the
        # position gaps earlier crashes left.
        checkpoint_interval_s=0.02 if max_segments else rng.choice([0.02, 0.3, 60.0]),
    )
    limits = Limits(max_queued_inputs=1000, shutdown_grace_s=0.1)
    async with Runtime(runtime_id="loop", store=store, profiles=profiles, limits=limits) as rt:
        say("opened")
        problems = await verify(rt, expected, bool(max_segments))
        if problems:
            say("MISMATCH " + " | ".join(problems[:5]))
            sys.exit(3)
        say("verified")
        live = [w for w, e in expected["workers"].items() if not e["stopped"]]
        for i in range(ops):
            tag = f"{seed}-{i}"
            choice = rng.random()
            try:
                if not live or choice < 0.1:
                    d = await rt.create_worker(
                        {"name": f"c{tag}", "idempotency_key": f"c{tag}"} | {"profile": SLOW}
                    )
                    live.append(d.worker_id)
                    say(
                        {
                            "op": "create",
                            "key": f"c{tag}",
                            "worker": d.worker_id,
                            "cursor": d.last_cursor,
                        }
                    )
                    continue
                wid = rng.choice(live)
                if choice < 0.85:
                    content = f"u{tag}" if choice < 0.6 else f"s{tag}"
                    say({"op": "try", "worker": wid, "content": content})
                if choice < 0.6:
                    body = {
                        "content": f"u{tag}",
                        "on_busy": "enqueue",
                        "idempotency_key": f"u{tag}",
                    }
                    ack = await rt.send_input(rt.ref(wid), body)
                    say({"op": "input", "worker": wid, "content": f"u{tag}", "cursor": ack.cursor})
                elif choice < 0.85:
                    body = {"content": f"s{tag}", "kind": "system", "idempotency_key": f"s{tag}"}
                    ack = await rt.send_input(rt.ref(wid), body)
                    say({"op": "input", "worker": wid, "content": f"s{tag}", "cursor": ack.cursor})
                elif choice < 0.97:
                    await rt.cancel(rt.ref(wid))
                    say({"op": "cancel", "worker": wid})
                else:
                    await rt.stop_worker(rt.ref(wid))
                    live.remove(wid)
                    say({"op": "stop", "worker": wid})
            except WorkerRuntimeError as exc:
                say({"op": "refused", "code": exc.code})
            if rng.random() < 0.3:
                await anyio.sleep(rng.random() * 0.01)
        say("done")
        await anyio.sleep_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(
        main, args[0], args[1], int(args[2]), int(args[3]), int(args[4]) if len(args) > 4 else 0
    )
