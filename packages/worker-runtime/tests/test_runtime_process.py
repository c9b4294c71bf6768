"""The yoi-runtime process: real sockets, real signals, real restarts."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
pytest.importorskip("orjson", reason="the fs-store extra is not installed")
httpx = pytest.importorskip("httpx")

TOKEN = "process-token-7f3a9c"
CLI = [sys.executable, "-m", "worker_runtime.cli"]


def run_cli(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


@contextmanager
def runtime_process(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[Any, str]]:
    """Start yoi-runtime on a free port; yields (process, base_url) once it listens."""
    proc = subprocess.Popen(
        [*CLI, "--bind", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_real_process_keeps_workers_across_sigterm_and_restart(tmp_path: Path) -> None:
    """Over HTTP on a real socket: create, input, transcript and stop; SIGTERM exits 0; after
    a restart on the same fs store the Workers and their transcripts are back."""
    data = tmp_path / "data"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = ("--store", "fs", "--data-dir", str(data), "--token-file", str(token_file))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with runtime_process(*args) as (proc, url), httpx.Client(base_url=url, headers=headers) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        wid = c.post("/v1/workers", json={"name": "p"}).json()["worker"]["worker_id"]
        stopped = c.post("/v1/workers", json={"name": "s"}).json()["worker"]["worker_id"]
        c.post(f"/v1/workers/{wid}/input", json={"content": "hello over http"})
        deadline = time.monotonic() + 10
        while c.get(f"/v1/workers/{wid}").json()["worker"]["status"] != "idle":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        before = c.get(f"/v1/workers/{wid}/transcript").json()["transcript"]
        assert [i["role"] for i in before["items"]] == ["user", "assistant"]
        c.post(f"/v1/workers/{stopped}/stop", json={"reason": "bye"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        logs = proc.stderr.read()
        assert TOKEN not in logs
    with runtime_process(*args) as (proc, url), httpx.Client(base_url=url, headers=headers) as c:
        after = c.get(f"/v1/workers/{wid}/transcript").json()["transcript"]
        assert after["items"] == before["items"]
        assert c.get(f"/v1/workers/{stopped}").json()["worker"]["status"] == "stopped"
        assert c.get("/v1/runtime").json()["runtime"]["counts"]["workers"] == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_a_generated_token_is_written_0600_and_never_printed(tmp_path: Path) -> None:
    """Without a configured token the process writes one to <data-dir>/runtime.token with
    mode 0600 and prints the path, never the token."""
    data = tmp_path / "data"
    with runtime_process("--store", "fs", "--data-dir", str(data)) as (proc, url):
        token_file = data / "runtime.token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert httpx.get(f"{url}/v1/runtime").status_code == 401
        ok = httpx.get(f"{url}/v1/runtime", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout is not None
        assert proc.stderr is not None
        output = proc.stdout.read() + proc.stderr.read()
        assert token not in output


def test_the_token_can_come_from_an_environment_variable() -> None:
    """--token-env names a variable; its value authenticates and is never printed."""
    env = {**os.environ, "MY_RT_TOKEN": TOKEN}
    with runtime_process("--token-env", "MY_RT_TOKEN", env=env) as (proc, url):
        response = httpx.get(f"{url}/v1/runtime", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_help_starts_nothing() -> None:
    """--help prints usage and exits 0 without listening."""
    result = run_cli("--help")
    assert result.returncode == 0
    assert "usage: yoi-runtime" in result.stdout
    assert "listening" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-flag"],
        ["--bind", "nonsense"],
        ["--bind", "127.0.0.1:99999"],
        ["--store", "fs"],
        ["--store", "sqlite"],
        ["--fsync", "sometimes"],
        ["--runtime-id", "../x"],
        ["--token-file", "a", "--token-env", "B"],
        ["--bind", "0.0.0.0:0"],
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str]) -> None:
    """Unknown flags, malformed values, fs without --data-dir, and a non-loopback bind
    without a configured token exit 2 with a one-line reason and no traceback."""
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("yoi-runtime: ")
    assert "Traceback" not in result.stderr


def test_a_port_in_use_exits_1_clearly(tmp_path: Path) -> None:
    """Binding a port that another socket holds exits 1 saying so, without a traceback."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = run_cli("--bind", f"127.0.0.1:{port}", "--token-env", "PATH")
    finally:
        holder.close()
    assert result.returncode == 1
    assert "port is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_locked_store_exits_1_clearly(tmp_path: Path) -> None:
    """A second process on the same fs store exits 1 naming the lock, without a traceback."""
    data = tmp_path / "data"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = ("--store", "fs", "--data-dir", str(data), "--token-file", str(token_file))
    with runtime_process(*args) as (proc, _):
        result = run_cli("--bind", "127.0.0.1:0", *args)
        assert result.returncode == 1
        assert "runtime.lock" in result.stderr
        assert "Traceback" not in result.stderr
        assert str(tmp_path) not in result.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_a_store_of_another_runtime_id_exits_1_naming_both(tmp_path: Path) -> None:
    """Reopening an fs root with another --runtime-id exits 1 naming both ids."""
    data = tmp_path / "data"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    common = ("--store", "fs", "--data-dir", str(data), "--token-file", str(token_file))
    with runtime_process("--runtime-id", "first", *common) as (proc, _):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    result = run_cli("--bind", "127.0.0.1:0", "--runtime-id", "second", *common)
    assert result.returncode == 1
    assert "'first'" in result.stderr
    assert "'second'" in result.stderr


def test_without_the_extra_the_process_names_the_install_command() -> None:
    """With uvicorn (of the http-server extra) unavailable, yoi-runtime exits 1 with the
    MissingExtraError message."""
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None\n"
        "from worker_runtime.cli import main\n"
        "sys.exit(main(['--bind', '127.0.0.1:0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert "pip install 'worker-runtime[http-server]'" in result.stderr
