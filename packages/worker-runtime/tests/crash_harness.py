"""Runs ``fs_crash_driver.py`` children against one store root and keeps the record of what
they acknowledged (the test's side of the crash loop and the failpoint tests)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("fs_crash_driver.py")


@dataclass
class Lifetime:
    """What one child printed and how it ended."""

    lines: list[str] = field(default_factory=list)
    returncode: int | None = None

    @property
    def verified(self) -> bool:
        return "verified" in self.lines

    @property
    def mismatch(self) -> str | None:
        return next((line for line in self.lines if line.startswith("MISMATCH")), None)

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


@dataclass
class Ledger:
    """Every acknowledged effect so far, in the shape the driver verifies."""

    root: Path
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: dict[str, str] = field(default_factory=dict)
    cursors: list[tuple[str, str, int]] = field(default_factory=list)
    maybe: list[tuple[str, str, int]] = field(default_factory=list)
    acked: int = 0

    def write(self) -> Path:
        path = self.root.parent / f"{self.root.name}.expected.json"
        body = {
            "workers": self.workers,
            "creates": self.creates,
            "cursors": self.cursors,
            "maybe": self.maybe,
        }
        path.write_text(json.dumps(body))
        return path

    def absorb(self, life: Lifetime) -> None:
        """Record what the child acknowledged, and one cursor per Worker from this lifetime."""
        resumed: set[str] = set()
        in_flight: tuple[str, str, int] | None = None
        for line in life.lines:
            if not line.startswith("{"):
                continue
            ack = json.loads(line)
            op = ack["op"]
            if op == "try":
                wid = ack["worker"]
                in_flight = (wid, ack["content"], len(self.workers[wid]["inputs"]))
                continue
            if op in ("adopt", "drop"):
                self.maybe = [m for m in self.maybe if m[1] != ack["content"]]
                if op == "adopt":
                    self.workers[ack["worker"]]["inputs"].insert(ack["index"], ack["content"])
                continue
            in_flight = None
            if op == "refused":
                continue
            self.acked += 1
            wid = ack["worker"]
            if op == "create":
                self.workers[wid] = {"inputs": [], "stopped": False, "from": ack["cursor"]}
                self.creates[ack["key"]] = wid
            elif op == "input":
                inputs = self.workers[wid]["inputs"]
                inputs.append(ack["content"])
                if wid not in resumed:
                    resumed.add(wid)
                    self.cursors.append((wid, ack["cursor"], len(inputs)))
            elif op == "stop":
                self.workers[wid]["stopped"] = True
        if in_flight is not None:
            self.maybe.append(in_flight)

    def run(
        self,
        seed: int,
        *,
        ops: int = 40,
        kill_after: int | None = None,
        kill_after_s: float | None = None,
        failpoints: str | None = None,
        max_segments: int = 0,
        timeout: float = 60,
    ) -> Lifetime:
        """One child lifetime: SIGKILLed after ``kill_after`` acks (counted once it verified)
        or ``kill_after_s`` seconds, killed by its own failpoint, or stopped once it is done."""
        env = dict(os.environ)
        env.pop("YOI_STORE_FAILPOINTS", None)
        if failpoints:
            env["YOI_STORE_FAILPOINTS"] = failpoints
        args = [str(self.root), str(self.write()), str(seed), str(ops), str(max_segments)]
        errors = self.root.parent / f"{self.root.name}.stderr"
        with errors.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(DRIVER), *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        life = Lifetime()
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        acks = 0
        try:
            while True:
                wait = deadline - time.monotonic()
                if kill_after_s is not None:
                    wait = min(wait, started + kill_after_s - time.monotonic())
                try:
                    line = lines.get(timeout=max(wait, 0.001))
                except queue.Empty:
                    break  # the time to kill (or the timeout) has come
                if line is None:
                    break  # the child died (its failpoint) or exited
                life.lines.append(line)
                if line.startswith("MISMATCH"):
                    break
                if line.startswith("{"):
                    acks += 1
                if kill_after is not None and life.verified and acks >= kill_after:
                    break
                if line == "done":
                    break
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            reader.join(timeout=10)
            while True:  # lines printed before the kill are acknowledgements too
                try:
                    rest = lines.get_nowait()
                except queue.Empty:
                    break
                if rest is not None:
                    life.lines.append(rest)
            if proc.stdout is not None:
                proc.stdout.close()
        life.returncode = proc.returncode
        if proc.returncode not in (0, -signal.SIGKILL):
            life.lines.append("MISMATCH the child failed: " + errors.read_text()[-2000:])
        self.absorb(life)
        return life
