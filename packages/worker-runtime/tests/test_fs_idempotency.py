"""Idempotency keys live in the event log: a retried create or input returns the first
acknowledgement after a clean stop, after SIGKILL and after a 503, and starts nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import IdempotencyConflict, Limits, Runtime, WorkerRuntimeError
from worker_runtime.store.fs import FsRuntimeStore

pytestmark = pytest.mark.anyio


def open_rt(root: Path, **limits: Any) -> Runtime:
    return Runtime(runtime_id="idem", store=FsRuntimeStore(root), limits=Limits(**limits))


async def test_keys_survive_a_clean_stop_for_create_and_input(tmp_path: Path) -> None:
    """After a clean stop, the same create key and body return the same Worker, the same input
    key and body return the same turn_id and transcript_sequence, and nothing new happens."""
    create = {"name": "keyed", "idempotency_key": "create-1"}
    user = {"content": "hello", "idempotency_key": "in-1"}
    system = {"content": "a note", "kind": "system", "idempotency_key": "in-2"}
    async with open_rt(tmp_path) as rt:
        w = await rt.create_worker(create)
        first = await rt.send_input(w.worker_ref, user)
        noted = await rt.send_input(w.worker_ref, system)
    async with open_rt(tmp_path) as rt:
        again = await rt.create_worker(create)
        assert again.worker_id == w.worker_id
        assert len((await rt.list_workers()).workers) == 1
        retry = await rt.send_input(w.worker_ref, user)
        assert (retry.turn_id, retry.transcript_sequence) == (first.turn_id, 1)
        assert retry.cursor == first.cursor
        renote = await rt.send_input(w.worker_ref, system)
        assert (renote.turn_id, renote.transcript_sequence) == (None, noted.transcript_sequence)
        detail = await rt.get_worker(w.worker_ref)
        assert detail.overview.turns.total == 1
        with pytest.raises(IdempotencyConflict):
            await rt.send_input(w.worker_ref, {**user, "content": "another body"})
        with pytest.raises(IdempotencyConflict):
            await rt.create_worker({**create, "name": "another"})
        page = await rt.read_transcript(w.worker_ref)
    assert [i.content for i in page.items if i.role != "assistant"] == ["hello", "a note"]


async def test_only_the_newest_keys_are_kept_per_worker(tmp_path: Path) -> None:
    """With limits.max_idempotency_keys = 2, a restart keeps the two newest input keys: a
    retry of an older key is a new input (the documented bound), the newer ones are not."""
    async with open_rt(tmp_path, max_idempotency_keys=2) as rt:
        w = await rt.create_worker()
        for i in range(3):
            await rt.send_input(
                w.worker_ref, {"content": f"n{i}", "kind": "system", "idempotency_key": f"k{i}"}
            )
    async with open_rt(tmp_path, max_idempotency_keys=2) as rt:
        kept = await rt.send_input(
            w.worker_ref, {"content": "n2", "kind": "system", "idempotency_key": "k2"}
        )
        assert kept.transcript_sequence == 3
        forgotten = await rt.send_input(
            w.worker_ref, {"content": "n0", "kind": "system", "idempotency_key": "k0"}
        )
        assert forgotten.transcript_sequence == 4


CHILD = """
import anyio, sys
from worker_runtime import Limits, Runtime
from worker_runtime.store.fs import FsRuntimeStore
async def main(root):
    async with Runtime(runtime_id="idem", store=FsRuntimeStore(root)) as rt:
        w = await rt.create_worker({"name": "k", "idempotency_key": "create-k"})
        print("worker", w.worker_id, flush=True)
        for i in range(100000):
            body = {"content": f"m{i}", "on_busy": "enqueue", "idempotency_key": f"key-{i}"}
            ack = await rt.send_input(w.worker_ref, body)
            print("ack", i, ack.turn_id, ack.transcript_sequence, flush=True)
anyio.run(main, sys.argv[1])
"""


async def test_keys_survive_sigkill_and_a_retry_after_it_starts_nothing(tmp_path: Path) -> None:
    """A child acknowledging keyed inputs is SIGKILLed; after the restart every acknowledged
    key returns its first ack, the unacknowledged last one is applied at most once, and the
    create key names the same Worker."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    worker_id = proc.stdout.readline().split()[1]
    acks: dict[int, tuple[str, int]] = {}
    for line in proc.stdout:
        _, i, turn_id, sequence = line.split()
        acks[int(i)] = (turn_id, int(sequence))
        if len(acks) >= 40:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    async with open_rt(tmp_path, max_queued_inputs=1000) as rt:
        again = await rt.create_worker({"name": "k", "idempotency_key": "create-k"})
        assert again.worker_id == worker_id
        ref = rt.ref(worker_id)
        for i, (turn_id, sequence) in acks.items():
            body = {"content": f"m{i}", "on_busy": "enqueue", "idempotency_key": f"key-{i}"}
            retry = await rt.send_input(ref, body)
            assert (retry.turn_id, retry.transcript_sequence) == (turn_id, sequence)
        unacked = max(acks) + 1
        body = {"content": f"m{unacked}", "on_busy": "enqueue", "idempotency_key": f"key-{unacked}"}
        one = await rt.send_input(ref, body)
        two = await rt.send_input(ref, body)
        assert (one.turn_id, one.transcript_sequence) == (two.turn_id, two.transcript_sequence)
        with pytest.raises(IdempotencyConflict):
            await rt.send_input(ref, {**body, "content": "changed"})
        page = await rt.read_transcript(ref, limit=256)
        users = [i.content for i in page.items if i.role == "user"]
        assert len(users) == len(set(users))
        assert users.count(f"m{unacked}") == 1


FULL = """
import anyio, resource, signal, sys
from worker_runtime import Runtime, WorkerRuntimeError
from worker_runtime.store.fs import FsRuntimeStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
async def main(root):
    async with Runtime(runtime_id="idem", store=FsRuntimeStore(root)) as rt:
        w = await rt.create_worker()
        print("worker", w.worker_id, flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        for i in range(10000):
            body = {"content": f"n{i} " + "x" * 100, "kind": "system", "idempotency_key": f"k{i}"}
            try:
                await rt.send_input(w.worker_ref, body)
            except WorkerRuntimeError as exc:
                print("failed", i, exc.code, exc.status, flush=True)
                return
anyio.run(main, sys.argv[1])
"""


async def test_a_503_is_outcome_unknown_and_a_retry_with_its_key_never_duplicates(
    tmp_path: Path,
) -> None:
    """An input answered 503 (the disk filled up) may or may not have been recorded; after a
    restart, retrying it with the same key applies it exactly once."""
    result = subprocess.run(
        [sys.executable, "-c", FULL, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stdout.splitlines()
    worker_id = lines[0].split()[1]
    _, failed, code, status = lines[-1].split()
    assert (code, status) == ("runtime_unavailable", "503")
    i = int(failed)
    body = {"content": f"n{i} " + "x" * 100, "kind": "system", "idempotency_key": f"k{i}"}
    async with open_rt(tmp_path) as rt:
        ref = rt.ref(worker_id)
        first = await rt.send_input(ref, body)
        second = await rt.send_input(ref, body)
        assert first.transcript_sequence == second.transcript_sequence
        page = await rt.read_transcript(ref, limit=256)
    contents = [item.content for item in page.items]
    assert contents.count(body["content"]) == 1
    assert [item.sequence for item in page.items] == list(range(1, len(page.items) + 1))
    assert not isinstance(first, WorkerRuntimeError)
