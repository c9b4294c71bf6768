"""An open of the fs store after a SIGKILL parses only the active segment's records after the
last checkpoint, and still truncates a torn tail, quarantines a bad record and survives a
damaged index."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import Limits
from worker_runtime.events import Event
from worker_runtime.store import WorkerRecord
from worker_runtime.store.fs import FsRuntimeStore

pytestmark = pytest.mark.anyio

BEFORE = 3000  # events the checkpoint covers
AFTER = 25  # events written after it, before the kill

#: A child that writes BEFORE events, checkpoints, writes AFTER more and is SIGKILLed.
CHILD = """
import os, signal, sys
import anyio
from worker_runtime import Limits
from worker_runtime.events import Event
from worker_runtime.store.fs import FsRuntimeStore

def event(p):
    return Event(p, f"inc-{p:x}", "diagnostic", "uni", None, None, "t", {"x": f"e{p}"})

async def main(root, before, after):
    store = FsRuntimeStore(root, checkpoint_interval_s=3600)
    await store.open(runtime_id="uni", limits=Limits())
    store.append_events([event(p) for p in range(1, before + 1)])
    await store.sync()
    store.checkpoint()
    store.append_events([event(p) for p in range(before + 1, before + after + 1)])
    await store.sync()
    print("synced", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


def crashed_store(root: Path) -> Path:
    """A store whose writer was SIGKILLed with AFTER events past its checkpoint; returns the
    active segment's data file."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(BEFORE), str(AFTER)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "synced" in done.stdout
    segments = sorted((root / "events").glob("*.jsonl"))
    assert len(segments) == 1
    return segments[0]


async def reopen(root: Path) -> tuple[FsRuntimeStore, list[str], int]:
    """Open the store, counting the records its recovery parsed; returns the store, the
    diagnostic codes and that count."""
    store = FsRuntimeStore(root)
    parsed = 0

    def count() -> None:
        nonlocal parsed
        parsed += 1

    store.failpoints.on("recovery.parse", count)
    opened = await store.open(runtime_id="uni", limits=Limits())
    return store, [d.code for d in opened.diagnostics], parsed


def positions(store: FsRuntimeStore) -> list[int]:
    out: list[int] = []
    after = 0
    while True:
        got = store.read_events(after, 1000, None) or []
        if not got:
            return out
        out.extend(e.position for e in got)
        after = got[-1].position


async def test_an_open_after_a_kill_parses_only_the_records_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    """Recovery parses exactly the events written after the last checkpoint, not the
    thousands before it in the same active segment, and every event is still served."""
    crashed_store(tmp_path)
    store, codes, parsed = await reopen(tmp_path)
    assert parsed == AFTER
    assert "store.unclean_shutdown" in codes
    assert positions(store) == list(range(1, BEFORE + AFTER + 1))
    await store.close()


async def test_a_torn_tail_after_the_checkpoint_is_still_truncated(tmp_path: Path) -> None:
    """A torn last record past the checkpoint is cut off (the file ends on a record again and
    its index matches it), reported, and nothing before it is lost."""
    data = crashed_store(tmp_path)
    whole = data.stat().st_size
    with data.open("ab") as f:
        f.write(b'{"p": 99999999, "c": "tor')
    store, codes, parsed = await reopen(tmp_path)
    assert "store.torn_tail_truncated" in codes
    assert parsed == AFTER + 1
    assert data.stat().st_size == whole
    assert data.with_suffix(".idx").stat().st_size == 8 * (BEFORE + AFTER)
    assert positions(store) == list(range(1, BEFORE + AFTER + 1))
    await store.close()


async def test_a_bad_record_after_the_checkpoint_is_quarantined(tmp_path: Path) -> None:
    """Garbage between two records past the checkpoint is quarantined, its slot kept, and the
    segment's untouched prefix and later records are all still served in place."""
    data = crashed_store(tmp_path)
    lines = data.read_bytes().splitlines(keepends=True)
    lines.insert(BEFORE + 10, b"garbage that is not a record\n")
    data.write_bytes(b"".join(lines))
    store, codes, _ = await reopen(tmp_path)
    assert "store.record_quarantined" in codes
    assert positions(store) == list(range(1, BEFORE + AFTER + 1))
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    await store.close()


async def test_an_index_that_does_not_match_the_checkpoint_falls_back_to_a_whole_scan(
    tmp_path: Path,
) -> None:
    """When the index entry of the checkpoint's record does not point at that record, the
    prefix is not trusted: the whole segment is parsed and every event is served."""
    data = crashed_store(tmp_path)
    index = data.with_suffix(".idx")
    with index.open("r+b") as f:
        f.seek(8 * (BEFORE - 1))
        f.write(struct.pack(">Q", 17))  # inside the first record
    store, _, parsed = await reopen(tmp_path)
    assert parsed == BEFORE + AFTER
    assert positions(store) == list(range(1, BEFORE + AFTER + 1))
    await store.close()
    assert index.stat().st_size == 8 * (BEFORE + AFTER)


def created(position: int, worker_id: str) -> Event:
    return Event(position, f"inc-{position:x}", "worker_created", "uni", worker_id, None, "t", {})


def noted(position: int, worker_id: str, sequence: int) -> Event:
    data = {"input_kind": "system", "content": f"n{sequence}", "transcript_sequence": sequence}
    return Event(position, f"inc-{position:x}", "input_accepted", "uni", worker_id, None, "t", data)


def delta(position: int, worker_id: str) -> Event:
    return Event(position, f"inc-{position:x}", "output_delta", "uni", worker_id, "t1", "t", {})


async def test_without_the_catalog_no_worker_is_replayed_from_its_creation(
    tmp_path: Path,
) -> None:
    """With the catalog gone, Workers with no event but their creation are rebuilt from that
    event and a Worker with only output events from the state.json the checkpoint gave it:
    the open replays nothing the checkpoint covered (the segments between are unreadable
    and are never read), and every state is right."""
    store = FsRuntimeStore(tmp_path, segment_max_events=50)
    await store.open(runtime_id="uni", limits=Limits())
    ids = [f"w{i}" for i in range(7)]
    for i, wid in enumerate(ids):
        store.add_worker(WorkerRecord(wid, wid, {}, "t", i, i + 1))
    store.append_events([created(i + 1, wid) for i, wid in enumerate(ids)])
    store.append_events([delta(8, "w6"), delta(9, "w6")])
    store.append_events([noted(p, "w5", p - 9) for p in range(10, 210)])
    await store.sync()
    await store.close()
    assert (tmp_path / "workers" / "w-w6" / "state.json").exists()
    assert not (tmp_path / "workers" / "w-w0" / "state.json").exists()
    (tmp_path / "catalog.jsonl").unlink()
    segments = sorted((tmp_path / "events").glob("*.jsonl"))
    for middle in segments[1:-1]:  # what a replay from position 1 would have to read
        middle.write_bytes(b"x" * middle.stat().st_size)
    again = FsRuntimeStore(tmp_path, segment_max_events=50)
    opened = await again.open(runtime_id="uni", limits=Limits())
    assert "store.catalog_rebuilt" in [d.code for d in opened.diagnostics]
    states = {w.record.worker_id: w.state for w in opened.workers}
    assert [states[w].position for w in ids[:5]] == [1, 2, 3, 4, 5]
    assert [states[w].last_cursor for w in ids[:5]] == [f"inc-{p:x}" for p in range(1, 6)]
    assert states["w5"].transcript_len == 200
    assert states["w6"].position == 9
    await again.close()
