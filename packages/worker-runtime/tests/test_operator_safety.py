"""Careless operators and local attackers: token files, logs, the Worker cap, an echo that
must not stall the loop, and the byte budget of the event window. Real processes on loopback."""

from __future__ import annotations

import json
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

import anyio
import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
pytest.importorskip("orjson", reason="the fs-store extra is not installed")
httpx = pytest.importorskip("httpx")

CLI = [sys.executable, "-m", "worker_runtime.cli"]
TOKEN = "operator-safety-token-0d7e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


@contextmanager
def runtime(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[Any, str, str]]:
    """Start yoi-runtime; yields (process, base_url, announce line) once it listens."""
    cmd = [*CLI, *args] if "--bind" in args else [*CLI, "--bind", "127.0.0.1:0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, match.group(1), line
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=30, check=False, env=env
    )


def token_path(line: str) -> Path:
    match = re.search(r"generated token file (\S+)", line)
    assert match, line
    return Path(match.group(1))


def answers(url: str, token: str) -> int:
    return httpx.get(f"{url}/v1/runtime", headers={"Authorization": f"Bearer {token}"}).status_code


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- token files ---------------------------------------------------------------------------


def test_a_failed_second_start_on_a_locked_fs_root_keeps_the_live_token(tmp_path: Path) -> None:
    """A second yoi-runtime on a locked fs root exits 1 without touching runtime.token: the
    running Runtime still answers its file's token."""
    data = tmp_path / "data"
    with runtime("--store", "fs", "--data-dir", str(data)) as (_proc, url, line):
        path = token_path(line)
        assert path == data / "runtime.token"
        token = path.read_text().strip()
        before = path.stat()
        second = run("--bind", "127.0.0.1:0", "--store", "fs", "--data-dir", str(data))
        assert second.returncode == 1, second.stderr
        assert path.read_text().strip() == token
        assert path.stat().st_ino == before.st_ino
        assert answers(url, token) == 200


def test_a_failed_start_on_a_port_in_use_keeps_the_live_token(tmp_path: Path) -> None:
    """A second memory Runtime on a port in use exits 1 without writing any token file: the
    first one's file still holds the token it answers."""
    xdg = private_dir(tmp_path / "xdg")
    env = _env(XDG_RUNTIME_DIR=str(xdg))
    port = free_port()
    with runtime("--bind", f"127.0.0.1:{port}", env=env) as (_proc, url, line):
        path = token_path(line)
        token = path.read_text().strip()
        files = sorted(p.name for p in path.parent.iterdir())
        second = run("--bind", f"127.0.0.1:{port}", env=env)
        assert second.returncode == 1
        assert "in use" in second.stderr
        assert path.read_text().strip() == token
        assert sorted(p.name for p in path.parent.iterdir()) == files
        assert answers(url, token) == 200


def test_two_memory_runtimes_with_the_default_id_get_their_own_token_files(
    tmp_path: Path,
) -> None:
    """Two memory Runtimes with the default id write two token files, and each answers its own."""
    env = _env(XDG_RUNTIME_DIR=str(private_dir(tmp_path / "xdg")))
    with runtime(env=env) as (_a, url_a, line_a), runtime(env=env) as (_b, url_b, line_b):
        path_a, path_b = token_path(line_a), token_path(line_b)
        assert path_a != path_b
        token_a, token_b = path_a.read_text().strip(), path_b.read_text().strip()
        assert answers(url_a, token_a) == 200
        assert answers(url_b, token_b) == 200
        assert answers(url_a, token_b) == 401


def test_a_memory_runtimes_token_file_is_removed_when_it_stops(tmp_path: Path) -> None:
    """A memory Runtime removes its generated token file when it stops on SIGTERM."""
    env = _env(XDG_RUNTIME_DIR=str(private_dir(tmp_path / "xdg")))
    with runtime(env=env) as (proc, _url, line):
        path = token_path(line)
        assert path.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not path.exists()


def test_a_planted_symlink_is_replaced_never_followed(tmp_path: Path) -> None:
    """A symlink planted where the token goes (memory and fs) is replaced by a 0600 file; its
    target keeps its content and mode."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    xdg = private_dir(tmp_path / "xdg")
    port = free_port()
    user_dir = private_dir(xdg / f"yoi-runtime-{os.getuid()}")
    (user_dir / f"local-{port}.token").symlink_to(victim)
    with runtime("--bind", f"127.0.0.1:{port}", env=_env(XDG_RUNTIME_DIR=str(xdg))) as (
        _proc,
        url,
        line,
    ):
        path = token_path(line)
        assert not path.is_symlink()
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert answers(url, path.read_text().strip()) == 200
    data = tmp_path / "data"
    data.mkdir()
    (data / "runtime.token").symlink_to(victim)
    with runtime("--store", "fs", "--data-dir", str(data)) as (_proc, url, line):
        path = token_path(line)
        assert not path.is_symlink()
        assert answers(url, path.read_text().strip()) == 200
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


@pytest.mark.parametrize("store", ["memory", "fs"])
def test_a_group_or_world_writable_token_directory_is_refused(tmp_path: Path, store: str) -> None:
    """A token directory that others can write to (a pre-created 0777 yoi-runtime-<uid>/ or a
    0777 data dir) makes the start fail with exit 1 and a clear message; nothing is written."""
    xdg = private_dir(tmp_path / "xdg")
    if store == "memory":
        shared = xdg / f"yoi-runtime-{os.getuid()}"
        args: tuple[str, ...] = ()
    else:
        shared = tmp_path / "data"
        args = ("--store", "fs", "--data-dir", str(shared))
    shared.mkdir()
    shared.chmod(0o777)
    result = run("--bind", "127.0.0.1:0", *args, env=_env(XDG_RUNTIME_DIR=str(xdg)))
    assert result.returncode == 1
    # The token's directory check, or (fs) the store's own check of its root, which comes first.
    assert re.search(r"writable by (its )?group or (by )?(others|everyone)", result.stderr)
    assert "Traceback" not in result.stderr
    assert not list(shared.glob("*.token"))


# -- logs ------------------------------------------------------------------------------------

KEY = "sk-planted-log-key-93be41f07ac2d5"
SECRET_WORD = "zanzibarquokka"


@pytest.mark.anyio
@pytest.mark.parametrize("level", ["debug", "info", "warning"])
async def test_no_log_line_shows_a_reflected_key_or_the_conversation(
    tmp_path: Path, level: str
) -> None:
    """At every log level, with a provider that echoes the key in a response header and a
    client on the SSE stream, no line the process prints shows the key or the conversation."""
    pytest.importorskip("openai", reason="the openai extra is not installed")
    from .fake_providers import Reply, fake_provider

    async with fake_provider(reflect_key_header="x-echoed-credential") as (server, root):
        server.queue(Reply(deltas=[f"{SECRET_WORD} ", "reply"], usage=(4, 2)))
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            'default = "gpt"\n[profiles.gpt]\nprovider = "openai"\nmodel = "gpt-test"\n'
            f'base_url = "{root}/v1"\napi_key_env = "YOI_TEST_LOG_KEY"\n'
        )
        args = [
            *CLI, "--bind", "127.0.0.1:0", "--token-env", "YOI_TEST_LOG_TOKEN",
            "--profiles", str(profiles), "--log-level", level,
        ]  # fmt: skip
        env = _env(YOI_TEST_LOG_KEY=KEY, YOI_TEST_LOG_TOKEN=TOKEN, OPENAI_LOG="debug")
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert match, line
            async with httpx.AsyncClient(base_url=match.group(0), headers=AUTH) as c:
                worker = (await c.post("/v1/workers", json={})).json()["worker"]
                path = f"/v1/workers/{worker['worker_id']}"
                sent = await c.post(f"{path}/input", json={"content": f"tell {SECRET_WORD}"})
                assert sent.status_code == 200
                text = ""
                with anyio.fail_after(20):
                    params = {"cursor": worker["last_cursor"]}
                    async with c.stream("GET", f"{path}/events", params=params) as events:
                        async for raw in events.aiter_lines():
                            if raw.startswith("data: "):
                                event = json.loads(raw[6:])
                                if event["kind"] == "output_delta":
                                    text += event["data"]["text"]
                                if event["kind"] in ("turn_completed", "turn_failed"):
                                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(lambda: proc.wait(timeout=30))
            printed = proc.stdout.read() + proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
    assert text == f"{SECRET_WORD} reply"
    assert server.headers
    assert server.headers[-1]["authorization"] == f"Bearer {KEY}"
    if level != "warning":
        assert '"logger": "worker_runtime.cli"' in printed  # yoi's own lines still print
    for fragment in (KEY, KEY[:14], KEY[-10:], SECRET_WORD):
        assert fragment not in printed, fragment


def test_the_backend_names_no_remote_url_at_its_default_level(tmp_path: Path) -> None:
    """At the Backend's default level neither its remote event streams nor its health polls
    of a remote Runtime log the remote's URL."""
    pytest.importorskip("yoi_workspace_server")
    token_file = tmp_path / "remote.token"
    token_file.write_text(TOKEN)
    with runtime("--token-file", str(token_file), "--runtime-id", "far") as (
        _remote,
        remote_url,
        _line,
    ):
        config = tmp_path / "backend.toml"
        config.write_text(
            f'[[remote]]\nruntime_id = "far"\nbase_url = "{remote_url}"\n'
            f'token_file = "{token_file}"\n'
        )
        backend = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "yoi_workspace_server.cli",
                "--bind",
                "127.0.0.1:0",
                "--data-dir",
                str(tmp_path / "b"),
                "--config",
                str(config),
                "--token-file",
                str(token_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert backend.stdout is not None
            line = backend.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert match, line
            base = match.group(0)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=base, timeout=10, headers=auth) as c:
                created = c.post("/api/runtimes/far/workers", json={})
                assert created.status_code == 201, created.text
                worker_id = created.json()["worker"]["worker_id"]
                path = f"/api/runtimes/far/workers/{worker_id}"
                with c.stream("GET", f"{path}/events") as events:
                    assert events.status_code == 200
                    sent = c.post(f"{path}/input", json={"content": "hello"})
                    assert sent.status_code == 200, sent.text
                    for raw in events.iter_lines():
                        if raw.startswith("event: turn_completed"):
                            break
            time.sleep(2.5)  # a health poll at the default 2 s
        finally:
            backend.send_signal(signal.SIGTERM)
            backend.wait(timeout=30)
            printed = (backend.stdout.read() if backend.stdout else "") + (
                backend.stderr.read() if backend.stderr else ""
            )
            for stream in (backend.stdout, backend.stderr):
                if stream is not None:
                    stream.close()
    port = remote_url.rsplit(":", 1)[1]
    assert f":{port}" not in printed
    assert "HTTP Request" not in printed


# -- the Worker cap --------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory", "fs"])
def test_creating_a_worker_beyond_max_workers_is_refused_with_limit_exceeded(
    tmp_path: Path, store: str
) -> None:
    """--max-workers caps the Workers a Runtime holds: the next create gets 409
    limit_exceeded naming the limit, and the cap holds across a restart (fs)."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = ["--token-file", str(token_file), "--max-workers", "3"]
    if store == "fs":
        args += ["--store", "fs", "--data-dir", str(tmp_path / "data")]
    with runtime(*args) as (_proc, url, _line), httpx.Client(base_url=url, headers=AUTH) as c:
        for _ in range(3):
            assert c.post("/v1/workers", json={}).status_code == 201
        refused = c.post("/v1/workers", json={})
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "limit_exceeded"
        assert error["details"] == {"limit": "max_workers", "value": 3}
        assert c.get("/v1/runtime").json()["runtime"]["counts"]["workers"] == 3
    if store == "fs":
        with runtime(*args) as (_proc, url, _line):
            again = httpx.post(f"{url}/v1/workers", json={}, headers=AUTH)
            assert again.status_code == 409


# -- echo yields to the loop -------------------------------------------------------------------


def test_a_256_kib_echo_does_not_stall_other_clients(tmp_path: Path) -> None:
    """While the echo backend streams a 256 KiB input of one-letter words (131,072 deltas),
    another client's /healthz never waits longer than 450 ms (without yielding it waited about
    0.9 s; with it about 50 ms on an idle machine: the margin is for shared CI cores)."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    content = "a " * (128 * 1024 - 1) + "a"
    with (
        runtime("--token-file", str(token_file)) as (_proc, url, _line),
        httpx.Client(base_url=url, headers=AUTH, timeout=30) as c,
    ):
        worker = c.post("/v1/workers", json={}).json()["worker"]
        path = f"/v1/workers/{worker['worker_id']}"
        c.get("/healthz")
        assert c.post(f"{path}/input", json={"content": content}).status_code == 200
        worst, deadline = 0.0, time.monotonic() + 60
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert c.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - t0)
            status = c.get(path).json()["worker"]["status"]
            if status == "idle":
                break
        else:
            pytest.fail("the echo turn did not finish")
    assert worst < 0.45, worst


# -- the byte budget of the event window ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("budget", [1024 * 1024, None])
async def test_the_event_window_keeps_to_its_byte_budget(budget: int | None) -> None:
    """With runtime_event_window_bytes of 1 MiB, 64 system inputs of 64 KiB leave about 1 MiB
    of events readable (older cursors expire, runtime-wide and for the Worker); with the
    default budget all of them stay."""
    from worker_runtime import Limits, Runtime
    from worker_runtime.errors import CursorExpired

    limits = Limits(runtime_event_window_bytes=budget) if budget else Limits()
    async with Runtime(runtime_id="budget", limits=limits) as rt:
        worker = await rt.create_worker({})
        ref = worker.worker_ref
        start = worker.last_cursor
        for i in range(64):
            await rt.send_input(ref, {"kind": "system", "content": f"{i} " + "x" * 65536})
        retained, cursor = 0, None
        while True:
            page = await rt.read_events(cursor=cursor, limit=100)
            if not page.events:
                break
            retained += len(json.dumps(page.events))
            cursor = page.next_cursor
        if budget is None:
            assert retained > 64 * 65536
            await rt.read_events(cursor=start, worker=ref)
            return
        assert 512 * 1024 < retained < budget + 80 * 1024
        with pytest.raises(CursorExpired):
            await rt.read_events(cursor=start)
        with pytest.raises(CursorExpired):
            await rt.read_events(cursor=start, worker=ref)
        newest = await rt.read_events(worker=ref, limit=100)
        assert newest.events[-1]["data"]["content"].startswith("63 ")
