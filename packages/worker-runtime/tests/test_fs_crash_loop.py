"""Repeated crashes of a real child process on one fs store: a seeded loop of SIGKILLs at
varied points, and one deterministic crash at each named failpoint."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from .crash_harness import Ledger

SEED = 1616
RECOVERY_POINTS = [
    "recovery.replay",
    "recovery.checkpoint",
    "recovery.roll",
]


def test_a_seeded_crash_loop_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Thirty-plus SIGKILLs (after a seeded number of acks, at a seeded moment of startup, or
    at a failpoint inside recovery, a checkpoint or a segment roll) under a mix of creates,
    inputs, system inputs, cancels and stops on several Workers: after every restart each
    acknowledged effect is there exactly once and in order, cursors from every earlier
    lifetime resume exactly, and no Worker is left running."""
    rng = random.Random(SEED)
    ledger = Ledger(tmp_path / "store")
    kills = 0
    for i in range(34):
        mode = rng.random()
        seed = SEED * 100 + i
        if mode < 0.55 or i < 2:
            life = ledger.run(seed, ops=30, kill_after=rng.randint(1, 25))
        elif mode < 0.75:
            life = ledger.run(seed, ops=30, kill_after_s=rng.uniform(0.2, 1.5))
        else:
            point = rng.choice(
                [*RECOVERY_POINTS, "checkpoint.worker", "checkpoint.finish", "segment.roll"]
            )
            life = ledger.run(seed, ops=30, failpoints=f"{point}=kill@{rng.randint(1, 2)}")
        assert life.mismatch is None, (i, life.mismatch)
        kills += life.killed
    final = ledger.run(SEED, ops=0)
    assert final.mismatch is None, final.mismatch
    assert final.verified
    assert kills >= 30
    assert ledger.acked >= 100
    assert len(ledger.workers) >= 3


def test_each_recovery_phase_survives_a_crash_inside_it(tmp_path: Path) -> None:
    """A store left by a SIGKILL is opened with a kill armed at each recovery phase in turn
    (replay, the checkpoint pass that writes what recovery rebuilt, the position-gap roll):
    each dies at that point, and the next open still finds every acknowledged effect."""
    ledger = Ledger(tmp_path / "store")
    assert ledger.run(1, ops=30, kill_after=20).killed
    for point in RECOVERY_POINTS:
        life = ledger.run(2, failpoints=f"{point}=kill")
        assert life.killed, point
        if point != "recovery.checkpoint":  # that pass runs once the store serves
            assert "opened" not in life.lines, point
    life = ledger.run(3, ops=0)
    assert life.verified, life.mismatch


def _torn_tail(root: Path) -> None:
    active = sorted((root / "events").glob("*.jsonl"))[-1]
    with active.open("ab") as f:
        f.write(b'{"p": 99999999, "c": "torn')


def _garbage_mid_log(root: Path) -> None:
    active = sorted((root / "events").glob("*.jsonl"))[-1]
    lines = active.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2
    lines.insert(len(lines) - 1, b"garbage that is not a record\n")
    active.write_bytes(b"".join(lines))


@pytest.mark.parametrize(
    ("point", "damage"),
    [("recovery.truncate", _torn_tail), ("recovery.quarantine", _garbage_mid_log)],
)
def test_a_crash_during_a_repair_loses_nothing(point: str, damage: object, tmp_path: Path) -> None:
    """After a torn tail or a bad record mid-log, an open killed right after the repair (tail
    truncation, quarantine) leaves a store whose next open still has every acked effect."""
    ledger = Ledger(tmp_path / "store")
    assert ledger.run(1, ops=30, kill_after=15).killed
    damage(ledger.root)  # type: ignore[operator]
    life = ledger.run(2, failpoints=f"{point}=kill")
    assert life.killed
    assert "opened" not in life.lines
    life = ledger.run(3, ops=0)
    assert life.verified, life.mismatch


@pytest.mark.parametrize(
    "point", ["append.written", "segment.roll", "checkpoint.worker", "checkpoint.finish"]
)
def test_a_crash_at_a_write_point_loses_nothing_acknowledged(point: str, tmp_path: Path) -> None:
    """A kill after events reach the OS but before the ack, right after a segment roll, in the
    middle of a checkpoint pass or just before checkpoint.json is written loses nothing that
    was acknowledged, and the restarted store replays the rest exactly once."""
    ledger = Ledger(tmp_path / "store")
    assert ledger.run(1, ops=20, kill_after=10).killed
    life = ledger.run(2, ops=60, failpoints=f"{point}=kill@2")
    assert life.killed
    assert life.verified
    assert "done" not in life.lines  # the failpoint, not the end of the ops, ended it
    life = ledger.run(3, ops=0)
    assert life.verified, life.mismatch


def test_a_crash_in_the_middle_of_a_prune_loses_nothing(tmp_path: Path) -> None:
    """With retention on, a kill between removing a pruned segment's data and its index
    leaves a store that opens with every acknowledged transcript entry."""
    ledger = Ledger(tmp_path / "store")
    life = ledger.run(1, ops=200, failpoints="prune=kill", max_segments=2)
    assert life.killed
    assert "done" not in life.lines
    life = ledger.run(2, ops=0, max_segments=2)
    assert life.verified, life.mismatch
