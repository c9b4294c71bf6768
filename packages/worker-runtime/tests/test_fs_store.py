"""The filesystem store: restart, crash safety, corruption, locking and I/O failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import (
    InvalidInput,
    Limits,
    Profile,
    Profiles,
    Runtime,
    RuntimeUnavailable,
    StoreCorrupt,
)
from worker_runtime.store.fs import FsRuntimeStore
from worker_runtime.testing import EventCapture, ScriptedBackend, ScriptedTurn

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("fs_child.py")
SLOW = Profile(name="slow", provider="echo", chunk_delay_ms=30)
HANG = Profile(name="hang", provider="scripted")


def fs_runtime(root: Path, **store: Any) -> Runtime:
    backend = ScriptedBackend(default=ScriptedTurn.hang_after("partial"))
    return Runtime(
        runtime_id="fs-rt",
        store=FsRuntimeStore(root, **store),
        profiles=Profiles([SLOW, HANG]),
        backends={"scripted": backend},
        limits=Limits(shutdown_grace_s=0.1),
    )


async def run_turn(rt: Runtime, ref: Any, text: str) -> str:
    ack = await rt.send_input(ref, {"content": text})
    async with rt.subscribe(cursor=ack.cursor, worker=ref) as events:
        async for event in events:
            if event.kind == "turn_completed":
                return str(event.cursor)
    raise AssertionError("no turn_completed")


async def all_events(rt: Runtime, **query: Any) -> list[dict[str, Any]]:
    """Every retained event (after ``cursor``, for ``worker``), paging to the head."""
    out: list[dict[str, Any]] = []
    while True:
        page = await rt.read_events(limit=1000, **query)
        if not page.events:
            return out
        out.extend(page.events)
        query["cursor"] = page.next_cursor


def segment(root: Path) -> Path:
    return sorted((root / "events").glob("*.jsonl"))[-1]


def worker_dir(root: Path) -> Path:
    return next((root / "workers").iterdir())


async def test_layout_and_bounded_reads_on_the_fs_store(tmp_path: Path) -> None:
    """Creating a Worker and running turns writes the layout of contract §5 (runtime record,
    worker record and state, segmented JSONL log with its pointer, transcript and overview), and
    transcript pages read back exactly."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        w = await rt.create_worker({"name": "fs"})
        for i in range(5):
            await run_turn(rt, w.worker_ref, f"turn {i}")
        page = await rt.read_transcript(w.worker_ref, start=3, limit=4)
        assert [i.sequence for i in page.items] == [4, 5, 6, 7]
        assert page.items[0].role == "assistant"
        summary = await rt.summary()
        assert summary.store == "fs"
        assert "store.durable" in summary.capabilities
    record = json.loads((root / "runtime.json").read_text())
    assert record["runtime_id"] == "fs-rt"
    assert record["schema_version"] == 1
    assert record["clean_shutdown"] is True
    assert (root / "runtime.lock").exists()
    assert json.loads((root / "events" / "active.json").read_text())["segment"].endswith(".jsonl")
    wdir = worker_dir(root)
    for name in ("worker.json", "state.json", "overview.json", "transcript.jsonl"):
        assert (wdir / name).exists(), name
    overview = json.loads((wdir / "overview.json").read_text())
    assert overview["turns"]["completed"] == 5
    assert json.loads((wdir / "worker.json").read_text())["profile"]["provider"] == "echo"


async def test_segments_roll_and_reads_cross_them(tmp_path: Path) -> None:
    """With small segments the log spans many files, and a resume reads across them."""
    root = tmp_path / "store"
    async with fs_runtime(root, segment_max_events=5) as rt:
        w = await rt.create_worker()
        first = w.last_cursor
        for i in range(6):
            await run_turn(rt, w.worker_ref, f"a b {i}")
        expected = [e["cursor"] for e in (await rt.read_events(cursor=first, limit=1000)).events]
    assert len(list((root / "events").glob("*.jsonl"))) > 5
    async with fs_runtime(root, segment_max_events=5) as rt:
        page = await rt.read_events(cursor=first, limit=1000)
        cursors = [e["cursor"] for e in page.events]
        assert cursors[: len(expected)] == expected


async def test_restart_restores_everything_and_old_cursors_resume(tmp_path: Path) -> None:
    """After a restart the Runtime keeps its id and incarnation, every Worker with its status,
    counters, transcript and overview, and cursors taken before the restart resume gap-free,
    runtime-wide and per Worker."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        a = await rt.create_worker({"name": "a"})
        b = await rt.create_worker({"name": "b"})
        mid = await run_turn(rt, a.worker_ref, "one two")
        await run_turn(rt, a.worker_ref, "three")
        await rt.send_input(b.worker_ref, {"content": "ctx", "kind": "system"})
        await rt.stop_worker(b.worker_ref, reason="done")
        before = await rt.summary()
        detail_a = await rt.get_worker(a.worker_ref)
        transcript_a = await rt.read_transcript(a.worker_ref)
        after_mid = (await rt.read_events(cursor=mid, limit=1000)).events
        after_mid_a = (await rt.read_events(cursor=mid, worker=a.worker_ref, limit=1000)).events
    async with fs_runtime(root) as rt:
        summary = await rt.summary()
        assert (summary.runtime_id, summary.incarnation) == (before.runtime_id, before.incarnation)
        assert summary.counts.workers == 2
        assert summary.counts.stopped == 1
        again = await rt.get_worker(a.worker_ref)
        assert again.overview == detail_a.overview
        assert again.name == "a"
        assert (await rt.read_transcript(a.worker_ref)).items == transcript_a.items
        b_detail = await rt.get_worker(b.worker_ref)
        assert b_detail.status == "stopped"
        assert (await rt.stop_worker(b.worker_ref)).status == "stopped"
        resumed = (await rt.read_events(cursor=mid, limit=1000)).events
        assert resumed[: len(after_mid)] == after_mid
        assert [e["kind"] for e in resumed[len(after_mid) :]] == ["runtime_started", "diagnostic"]
        resumed_a = (await rt.read_events(cursor=mid, worker=a.worker_ref, limit=1000)).events
        assert resumed_a == after_mid_a
        async with rt.subscribe(cursor=mid, worker=a.worker_ref) as events:
            live = [await events.__anext__() for _ in range(len(after_mid_a))]
        assert [e.to_dict() for e in live] == after_mid_a
        # The next turn continues the same conversation.
        async with EventCapture(rt, worker=a.worker_ref) as cap:
            await rt.send_input(a.worker_ref, {"content": "four"})
            done = await cap.wait_for("turn_completed")
        assert done.data["usage"]["input_tokens"] == 2 + 2 + 1 + 1 + 1


async def test_open_turns_are_interrupted_and_queued_inputs_run_after_a_crash(
    tmp_path: Path,
) -> None:
    """A turn running when the process was killed is settled as turn_interrupted on the next
    start (counted in recovered_turns), and acknowledged queued inputs then run in order."""
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(root), "batch", "queue"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    worker_line = child.stdout.readline().split()
    acks = [child.stdout.readline().split() for _ in range(3)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    worker_id = worker_line[1]
    rt = Runtime(runtime_id="crashy", store=FsRuntimeStore(root), profiles=Profiles([SLOW]))
    async with rt:
        started = await all_events(rt)
        boot = [e for e in started if e["kind"] == "runtime_started"][-1]
        assert boot["data"]["recovered_turns"] == 1
        interrupted = [e for e in started if e["kind"] == "turn_interrupted"]
        assert interrupted[-1]["turn_id"] == acks[0][2]
        assert interrupted[-1]["data"] == {"reason": "runtime_restart"}
        ref = rt.ref(worker_id)
        async with EventCapture(rt, worker=ref, cursor=boot["cursor"]) as cap:
            with anyio.fail_after(10):
                while len(cap.of_kind("turn_completed")) < 2:
                    await cap.wait_for(
                        "turn_completed", count=len(cap.of_kind("turn_completed")) + 1
                    )
        ran = [e.turn_id for e in cap.of_kind("turn_started")]
        assert ran[:2] == [acks[1][2], acks[2][2]]
        detail = await rt.get_worker(ref)
        assert detail.overview.turns.interrupted == 1


@pytest.mark.parametrize("kill_after", [1, 5, 40, 200])
@pytest.mark.parametrize("fsync", ["batch", "always"])
async def test_acknowledged_inputs_survive_sigkill(
    tmp_path: Path, kill_after: int, fsync: str
) -> None:
    """A child acknowledging a stream of inputs is killed with SIGKILL at several points;
    every input it acknowledged is in the transcript after the store is reopened."""
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(root), fsync, "inputs"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    worker_id = child.stdout.readline().split()[1]
    acked = [child.stdout.readline().rstrip("\n").split(maxsplit=3) for _ in range(kill_after)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    async with Runtime(runtime_id="crashy", store=FsRuntimeStore(root)) as rt:
        ref = rt.ref(worker_id)
        total = (await rt.get_worker(ref)).transcript_len
        assert total >= kill_after
        items = []
        start = 0
        while start < total:
            page = await rt.read_transcript(ref, start=start, limit=256)
            items.extend(page.items)
            start += 256
        by_sequence = {i.sequence: i.content for i in items}
        for _, sequence, _, content in acked:
            assert by_sequence[int(sequence)] == content
        assert [i.sequence for i in items] == list(range(1, total + 1))
        # The store stays writable after the crash.
        await rt.send_input(ref, {"content": "after", "kind": "system"})


async def test_a_torn_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    """A half-written last record of the log is truncated on open, with a
    store.torn_tail_truncated diagnostic, and everything before it loads."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        w = await rt.create_worker()
        await run_turn(rt, w.worker_ref, "intact")
    with segment(root).open("ab") as f:
        f.write(b'{"p": 99999, "k": "output_de')
    async with fs_runtime(root) as rt:
        codes = [d.code for d in await rt.diagnostics()]
        assert "store.torn_tail_truncated" in codes
        assert (await rt.get_worker(w.worker_ref)).overview.turns.completed == 1
        await run_turn(rt, w.worker_ref, "still writable")
    assert segment(root).read_bytes().endswith(b"\n")


async def test_garbage_mid_log_is_quarantined_and_later_records_load(tmp_path: Path) -> None:
    """A bad line in the middle of the log is moved to quarantine (with its file, offset and
    reason), a store.record_quarantined diagnostic is recorded, and the records after it still
    load."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        w = await rt.create_worker()
        await run_turn(rt, w.worker_ref, "first")
        await run_turn(rt, w.worker_ref, "second")
    path = segment(root)
    lines = path.read_bytes().split(b"\n")
    lines.insert(3, b"this is not json")
    path.write_bytes(b"\n".join(lines))
    async with fs_runtime(root) as rt:
        diagnostics = await rt.diagnostics()
        quarantined = [d for d in diagnostics if d.code == "store.record_quarantined"]
        assert len(quarantined) == 1
        assert "events/" in quarantined[0].message
        detail = await rt.get_worker(w.worker_ref)
        assert detail.overview.turns.completed == 2
        assert (await rt.read_transcript(w.worker_ref)).total_items == 4
    kept = [json.loads(p.read_text()) for p in (root / "quarantine").iterdir()]
    assert kept[0]["content"] == "this is not json"
    assert kept[0]["file"].startswith("events/")
    assert kept[0]["reason"]


async def test_a_corrupt_transcript_projection_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    """Garbage in a transcript file, or a missing transcript, is repaired from the event log
    when it is read, with a diagnostic, and the pages come back right."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        w = await rt.create_worker()
        for i in range(3):
            await run_turn(rt, w.worker_ref, f"turn {i}")
        expected = (await rt.read_transcript(w.worker_ref)).items
    transcript = worker_dir(root) / "transcript.jsonl"
    raw = transcript.read_bytes().split(b"\n")
    raw[2] = b"#garbage#" + raw[2][9:]
    transcript.write_bytes(b"\n".join(raw))
    async with fs_runtime(root) as rt:
        assert (await rt.read_transcript(w.worker_ref)).items == expected
        codes = [d.code for d in await rt.diagnostics()]
        assert "store.transcript_rebuilt" in codes
    transcript.unlink()
    (worker_dir(root) / "transcript.idx").unlink()
    async with fs_runtime(root) as rt:
        assert (await rt.read_transcript(w.worker_ref)).items == expected


async def test_a_worker_with_missing_files_is_skipped_and_the_rest_load(tmp_path: Path) -> None:
    """With no catalog to vouch for them (it is rebuilt from the Workers' files), a Worker
    whose worker.json is missing, or whose state is corrupt, is skipped with
    worker_snapshot_ignored, and every other Worker loads."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        ids = [(await rt.create_worker({"name": f"w{i}"})).worker_id for i in range(3)]
    dirs = {d.name: d for d in (root / "workers").iterdir()}
    (dirs[f"w-{ids[0]}"] / "worker.json").unlink()
    (dirs[f"w-{ids[1]}"] / "state.json").write_text("{broken")
    (root / "catalog.jsonl").unlink()
    async with fs_runtime(root) as rt:
        listed = [w.worker_id for w in (await rt.list_workers()).workers]
        assert listed == [ids[2]]
        ignored = [d for d in await rt.diagnostics() if d.code == "worker_snapshot_ignored"]
        assert sorted(d.worker_id or "" for d in ignored) == sorted(ids[:2])


async def test_a_corrupt_runtime_record_fails_the_open(tmp_path: Path) -> None:
    """A corrupt or missing runtime.json fails the open with store_corrupt, and a root made by
    another runtime_id is refused naming both ids; neither message holds a path."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        await rt.create_worker()
    record = (root / "runtime.json").read_text()
    (root / "runtime.json").write_text("{not json")
    with pytest.raises(StoreCorrupt) as info:
        async with fs_runtime(root):
            pass
    assert str(tmp_path) not in info.value.message
    (root / "runtime.json").unlink()
    with pytest.raises(StoreCorrupt):
        async with fs_runtime(root):
            pass
    (root / "runtime.json").write_text(record)
    other = Runtime(runtime_id="someone-else", store=FsRuntimeStore(root))
    with pytest.raises(InvalidInput) as mismatch:
        async with other:
            pass
    assert "'fs-rt'" in mismatch.value.message
    assert "'someone-else'" in mismatch.value.message
    async with fs_runtime(root) as rt:  # the failed opens released the lock
        assert (await rt.summary()).counts.workers == 1


async def test_a_second_process_on_the_same_root_fails_clearly(tmp_path: Path) -> None:
    """While one process holds the store, a second open fails with runtime_unavailable naming
    runtime.lock, not a traceback."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        await rt.create_worker()
        code = (
            "import anyio, sys\n"
            "from worker_runtime import Runtime\n"
            "from worker_runtime.store.fs import FsRuntimeStore\n"
            "async def main():\n"
            f"    async with Runtime(runtime_id='fs-rt', store=FsRuntimeStore({str(root)!r})):\n"
            "        pass\n"
            "try:\n"
            "    anyio.run(main)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc.code, exc.message)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    assert result.stdout.startswith("RuntimeUnavailable runtime_unavailable")
    assert "runtime.lock" in result.stdout
    assert str(tmp_path) not in result.stdout


async def test_a_full_disk_is_a_typed_error_and_the_store_stays_consistent(
    tmp_path: Path,
) -> None:
    """When writes fail (the file size limit stands in for a full disk), the command gets a
    typed runtime_unavailable error, later commands and reads are refused (nobody observes
    state the store did not take), and reopening the store shows every acknowledged input."""
    root = tmp_path / "store"
    code = (
        "import anyio, resource, signal, sys\n"
        "from worker_runtime import Runtime, WorkerRuntimeError\n"
        "from worker_runtime.store.fs import FsRuntimeStore\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "async def main():\n"
        # The root comes in argv, not in the code: a traceback that quotes this line (Python
        # 3.13 shows the lines of `-c` code) must not count as a message naming the path.
        "    async with Runtime(runtime_id='full', store=FsRuntimeStore(sys.argv[1])) as rt:\n"
        "        w = await rt.create_worker()\n"
        "        print('worker', w.worker_id, flush=True)\n"
        "        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "        for i in range(10000):\n"
        "            try:\n"
        "                body = {'content': 'x' * 100, 'kind': 'system'}\n"
        "                ack = await rt.send_input(w.worker_ref, body)\n"
        "                print('ack', ack.transcript_sequence, flush=True)\n"
        "            except WorkerRuntimeError as exc:\n"
        "                print('error', exc.code, exc.details.get('reason'), flush=True)\n"
        "                break\n"
        "        try:\n"
        "            await rt.send_input(w.worker_ref, {'content': 'y', 'kind': 'system'})\n"
        "        except WorkerRuntimeError as exc:\n"
        "            print('refused', exc.code, flush=True)\n"
        "        try:\n"
        "            await rt.get_worker(w.worker_ref)\n"
        "        except WorkerRuntimeError as exc:\n"
        "            print('read refused', exc.code, flush=True)\n"
        "anyio.run(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stdout.splitlines()
    worker_id = lines[0].split()[1]
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack")]
    assert any(line.startswith("error runtime_unavailable store_failed") for line in lines)
    assert lines[-2:] == ["refused runtime_unavailable", "read refused runtime_unavailable"]
    assert str(tmp_path) not in result.stdout + result.stderr
    async with Runtime(runtime_id="full", store=FsRuntimeStore(root)) as rt:
        ref = rt.ref(worker_id)
        total = (await rt.get_worker(ref)).transcript_len
        assert acked
        assert total >= max(acked)
        page = await rt.read_transcript(ref, limit=256)
        assert [i.sequence for i in page.items] == list(range(1, min(total, 256) + 1))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_a_read_only_root_refuses_new_workers_without_changing_state(
    tmp_path: Path,
) -> None:
    """With the workers directory read-only, creating a Worker is a typed error and the
    Runtime's state is unchanged."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        await rt.create_worker()
        (root / "workers").chmod(0o500)
        try:
            with pytest.raises(RuntimeUnavailable):
                await rt.create_worker()
            assert (await rt.summary()).counts.workers == 1
        finally:
            (root / "workers").chmod(0o700)


async def test_no_diagnostic_holds_an_absolute_path(tmp_path: Path) -> None:
    """Every diagnostic after repairs names files relative to the store root only."""
    root = tmp_path / "store"
    async with fs_runtime(root) as rt:
        w = await rt.create_worker()
        await run_turn(rt, w.worker_ref, "x y")
    with segment(root).open("ab") as f:
        f.write(b"torn")
    (worker_dir(root) / "worker.json").unlink()
    async with fs_runtime(root) as rt:
        diagnostics = await rt.diagnostics()
        assert len(diagnostics) >= 2
        for d in diagnostics:
            assert str(tmp_path) not in d.message
            assert "/" not in d.message or "events/" in d.message


async def test_cursors_resume_across_an_unclean_restart(tmp_path: Path) -> None:
    """After a SIGKILL, positions skip ahead (a store.unclean_shutdown diagnostic says so), and
    a cursor from before the crash still resumes in order: the old events after it, then the
    new ones, runtime-wide and for the Worker, before and after a further clean restart."""
    root = tmp_path / "store"
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(root), "batch", "inputs"],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        worker_id = child.stdout.readline().split()[1]
        for _ in range(20):
            child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    async with Runtime(runtime_id="crashy", store=FsRuntimeStore(root)) as rt:
        ref = rt.ref(worker_id)
        old = (await rt.read_events(worker=ref, limit=5)).events[-1]
        codes = [d.code for d in await rt.diagnostics()]
        assert "store.unclean_shutdown" in codes
        ack = await rt.send_input(ref, {"content": "after the crash", "kind": "system"})
        total = (await rt.get_worker(ref)).transcript_len
    for _ in range(2):  # reopened cleanly, the same holds
        async with Runtime(runtime_id="crashy", store=FsRuntimeStore(root)) as rt:
            ref = rt.ref(worker_id)
            events = await all_events(rt, cursor=old["cursor"], worker=ref)
            sequences = [e["data"]["transcript_sequence"] for e in events]
            assert sequences == list(range(old["data"]["transcript_sequence"] + 1, total + 1))
            assert events[-1]["cursor"] == ack.cursor
            everything = await all_events(rt, cursor=old["cursor"])
            assert ack.cursor in [e["cursor"] for e in everything]
            positions = [e["cursor"] for e in everything]
            assert len(positions) == len(set(positions))
            async with rt.subscribe(cursor=old["cursor"], worker=ref) as live:
                got = [await live.__anext__() for _ in range(len(events))]
            assert [e.cursor for e in got] == [e["cursor"] for e in events]


@pytest.mark.parametrize(
    "hostile", ["..", "../x", "a/b", "a\x00b", ".", "é" * 120, "..\\..\\x", "", "x" * 121]
)
def test_hostile_ids_never_become_paths(hostile: str) -> None:
    """A string outside the id rule is refused before it can become a path component."""
    from worker_runtime.store._fsfiles import encode_id

    with pytest.raises(InvalidInput):
        encode_id(hostile)


@pytest.mark.parametrize("tricky", ["Ab:C.d", "-", "x" * 120, ":" * 120, "a..b", "A" * 120])
def test_ids_encode_to_one_safe_path_component(tricky: str, tmp_path: Path) -> None:
    """Every valid id, however awkward, encodes to a single path component that stays inside
    its directory, is short enough for any filesystem, and decodes back to the same id."""
    from worker_runtime.store._fsfiles import decode_id, encode_id

    component = encode_id(tricky)
    assert "/" not in component
    assert not component.startswith(".")
    assert len(component) <= 200
    assert (tmp_path / component).resolve().parent == tmp_path.resolve()
    assert decode_id(component) == tricky
    (tmp_path / component).mkdir()


async def test_retention_never_prunes_what_the_checkpoint_has_not_covered(tmp_path: Path) -> None:
    """With retention on, segments newer than the last checkpoint are kept (replay after a
    crash needs them); once a checkpoint covers them, the oldest are pruned down to the cap."""
    root = tmp_path / "store"
    options: dict[str, Any] = {
        "segment_max_events": 4,
        "max_segments": 2,
        "checkpoint_interval_s": 3600,
    }
    async with fs_runtime(root, **options) as rt:
        w = await rt.create_worker()
        for i in range(10):
            await rt.send_input(w.worker_ref, {"content": f"n{i}", "kind": "system"})
        assert len(list((root / "events").glob("*.jsonl"))) > 2
    kept = len(list((root / "events").glob("*.jsonl")))
    async with fs_runtime(root, **options) as rt:  # the clean close checkpointed everything
        for i in range(10):
            await rt.send_input(w.worker_ref, {"content": f"m{i}", "kind": "system"})
        # What the checkpoint covered was pruned; what it did not is kept.
        assert 2 < len(list((root / "events").glob("*.jsonl"))) < kept + 3
    async with fs_runtime(root, **options) as rt:
        for i in range(5):
            await rt.send_input(w.worker_ref, {"content": f"k{i}", "kind": "system"})
        assert len(list((root / "events").glob("*.jsonl"))) == 2
        assert (await rt.read_transcript(w.worker_ref)).total_items == 25
