"""Real processes for the terminal client's tests: `yoi up`, `yoi-runtime`, and `yoi` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES = """\
[profiles.slow]
provider = "echo"
chunk_delay_ms = 150

[profiles.broken]
provider = "openai"
model = "none"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "YOI_TEST_NO_SUCH_KEY"
timeout_s = 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOI_")}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


@dataclass
class Server:
    argv: list[str]
    cwd: Path
    port: int
    proc: subprocess.Popen[str] | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = self.cwd / f"server-{self.port}.log"
        out = self.log.open("a")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(),
        )
        out.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.log.read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def backend(root: Path, port: int | None = None) -> Server:
    (root / "profiles.toml").write_text(PROFILES, encoding="utf-8")
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "yoi.cli",
        "up",
        "--bind",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(root / ".yoi"),
        "--profiles",
        str(root / "profiles.toml"),
    ]
    return Server(argv, root, port)


def runtime(root: Path, runtime_id: str = "gpu") -> Server:
    root.mkdir(parents=True, exist_ok=True)
    (root / "profiles.toml").write_text(PROFILES, encoding="utf-8")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "worker_runtime.cli",
        "--runtime-id",
        runtime_id,
        "--store",
        "fs",
        "--data-dir",
        str(root / "rt"),
        "--bind",
        f"127.0.0.1:{port}",
        "--profiles",
        str(root / "profiles.toml"),
    ]
    return Server(argv, root, port)


def yoi(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yoi.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env or clean_env(),
    )


def yoi_popen(args: Sequence[str], cwd: Path, stdout: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "yoi.cli", *args],
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
