"""Helpers for the trust-boundary tests: a real ``yoi-workspace-server`` process on loopback
and the error assertion (loaded by path: this directory is not a package)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

EMB = "/api/runtimes/backend-internal"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Backend:
    proc: subprocess.Popen[str]
    url: str
    port: int
    data: Path
    printed: list[str]
    stderr_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def token(self) -> str:
        return (self.data / "backend.token").read_text(encoding="utf-8").strip()

    def client(self, **headers: str) -> httpx.Client:
        """A client with no credentials unless given (``Authorization=…``)."""
        c = httpx.Client(base_url=self.url, timeout=10, headers=headers)
        self.clients.append(c)
        return c

    def authed(self) -> httpx.Client:
        return self.client(Authorization=f"Bearer {self.token}")

    def logs(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")


@contextmanager
def backend(
    data: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[Backend]:
    port = port or _free_port()
    args = [
        sys.executable, "-m", "yoi_workspace_server.cli",
        "--bind", f"127.0.0.1:{port}", "--data-dir", str(data), *extra,
    ]  # fmt: skip
    data.parent.mkdir(parents=True, exist_ok=True)
    stderr_path = data.parent / f"{data.name}-{port}-{time.monotonic_ns()}.stderr"
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, **(env or {})}
        )
    b = Backend(proc, f"http://127.0.0.1:{port}", port, data, [], stderr_path)
    try:
        assert proc.stdout is not None
        for _ in range(3):
            b.printed.append(proc.stdout.readline().rstrip("\n"))
        assert "listening on" in b.printed[0], (b.printed, b.logs())
        yield b
    finally:
        for c in b.clients:
            c.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()["error"]
    assert body["code"] == code, body
    return dict(body)


def workers(b: Backend) -> int:
    return len(b.authed().get(f"{EMB}/workers").json()["workers"])
