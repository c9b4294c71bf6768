"""A child process for the crash tests: opens an fs store, then sends inputs and prints each
acknowledgement as soon as it is returned (one line each, flushed), until it is killed.

Usage: python fs_child.py ROOT FSYNC MODE    (MODE: inputs | queue)
"""

from __future__ import annotations

import sys

import anyio

from worker_runtime import Limits, Profile, Profiles, Runtime
from worker_runtime.store.fs import FsRuntimeStore


async def main(root: str, fsync: str, mode: str) -> None:
    profiles = Profiles([Profile(name="slow", provider="echo", chunk_delay_ms=50)])
    store = FsRuntimeStore(root, fsync=fsync, checkpoint_interval_s=0.05)  # type: ignore[arg-type]
    async with Runtime(
        runtime_id="crashy", store=store, profiles=profiles, limits=Limits(max_queued_inputs=1000)
    ) as rt:
        if mode == "queue":
            w = await rt.create_worker({"profile": {"kind": "named", "name": "slow"}})
            print(f"worker {w.worker_id}", flush=True)
            for i in range(10_000):
                ack = await rt.send_input(
                    w.worker_ref, {"content": f"queued {i}", "on_busy": "enqueue"}
                )
                print(f"ack {ack.transcript_sequence} {ack.turn_id} queued {i}", flush=True)
            return
        w = await rt.create_worker()
        print(f"worker {w.worker_id}", flush=True)
        for i in range(100_000):
            ack = await rt.send_input(w.worker_ref, {"content": f"note {i}", "kind": "system"})
            print(f"ack {ack.transcript_sequence} - note {i}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
