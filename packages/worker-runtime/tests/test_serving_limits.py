"""Both server processes under hostile connections: slowloris, idle holds, huge heads,
connection floods, with a low descriptor limit. Real processes on loopback."""

from __future__ import annotations

import importlib.util
import re
import resource
import socket
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

TOKEN = "serving-limits-token-51c2"
RUNTIME = [sys.executable, "-m", "worker_runtime.cli"]
BACKEND = [sys.executable, "-m", "yoi_workspace_server.cli"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@contextmanager
def server(
    cmd: list[str], *args: str, low_fds: bool = False, pattern: str = r"listening on (http://\S+)"
) -> Iterator[tuple[Any, str]]:
    """Start a server process on a free port; yields (process, base_url) once it listens."""
    proc = subprocess.Popen(
        [*cmd, "--bind", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_low_fd_limit if low_fds else None,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(pattern, line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def fs_runtime(tmp_path: Path, *extra: str, low_fds: bool = False) -> Any:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    data = tmp_path / "data"
    return server(
        RUNTIME,
        "--store",
        "fs",
        "--data-dir",
        str(data),
        "--token-file",
        str(token_file),
        *extra,
        low_fds=low_fds,
    )


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def is_closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    """True once the server closed ``sock`` (EOF or reset) before ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            return True
        if not data:
            return True
    return False


def store_writes(client: Any) -> None:
    """Workers are created and take turns: the fs store accepts writes."""
    for _ in range(3):
        created = client.post("/v1/workers", json={"profile": {"kind": "builtin", "name": "echo"}})
        assert created.status_code == 201, created.text
        worker_id = created.json()["worker"]["worker_id"]
        sent = client.post(f"/v1/workers/{worker_id}/input", json={"content": "still writable"})
        assert sent.status_code in (200, 202), sent.text


@pytest.mark.parametrize("cmd", ["runtime", "backend"])
def test_slowloris_and_idle_holds_are_closed_and_the_store_stays_writable(
    tmp_path: Path, cmd: str
) -> None:
    """With RLIMIT_NOFILE=256, 300 connections that send nothing, a slow partial head, or no
    announced body never exhaust the descriptors: the store stays writable, and the header
    and idle timeouts close them."""
    limits = ("--header-timeout-s", "1.5", "--idle-timeout-s", "1.5")
    if cmd == "runtime":
        ctx = fs_runtime(tmp_path, *limits, low_fds=True)
    else:
        pytest.importorskip("yoi_workspace_server")
        ctx = server(BACKEND, "--data-dir", str(tmp_path / "b"), *limits, low_fds=True)
    with ctx as (proc, url), httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        host, port = address(url)
        assert client.get("/healthz").status_code == 200  # its connection opens before the flood
        held: list[socket.socket] = []
        try:
            for i in range(300):
                try:
                    sock = socket.create_connection((host, port), timeout=5)
                except OSError:
                    continue
                if i % 3 == 1:  # slowloris: a head that never ends
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ")
                elif i % 3 == 2:  # a body announced and never sent
                    sock.sendall(
                        b"POST /v1/workers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        + TOKEN.encode()
                        + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                    )
                held.append(sock)
            time.sleep(0.3)
            if cmd == "runtime":
                store_writes(client)  # while the holds are open, on a connection from before
            else:
                assert client.get("/healthz").status_code == 200
            deadline = time.monotonic() + 8
            still_open = [s for s in held if not is_closed_by_peer(s, deadline)]
            assert not still_open, f"{len(still_open)} of {len(held)} connections were held"
        finally:
            for sock in held:
                sock.close()
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as fresh:
            if cmd == "runtime":
                store_writes(fresh)
            else:
                assert fresh.get("/healthz").status_code == 200
        assert proc.poll() is None


def test_over_the_connection_cap_a_request_gets_503(tmp_path: Path) -> None:
    """Open connections above --max-connections get 503 runtime_unavailable
    (reason connection_limit); once they close, requests are served again."""
    with fs_runtime(tmp_path, "--max-connections", "8") as (_proc, url):
        host, port = address(url)
        held = [socket.create_connection((host, port), timeout=5) for _ in range(8)]
        try:
            time.sleep(0.2)
            response = httpx.get(f"{url}/healthz", timeout=5)
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "runtime_unavailable"
            assert error["details"] == {"reason": "connection_limit"}
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("requests were not served again after the connections closed")


def _send_huge_head(host: str, port: int, size: int) -> tuple[bytes, float]:
    """Send a request whose one header is ``size`` bytes; returns what came back and when
    (seconds after the start) the server answered or closed."""
    start = time.monotonic()
    sock = socket.create_connection((host, port), timeout=10)
    received = b""
    try:
        sock.sendall(b"GET /v1/runtime HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        sent = 0
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server closed the connection mid-head: a refusal
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except OSError:
            pass
    finally:
        sock.close()
    return received, time.monotonic() - start


@pytest.mark.parametrize("cmd", ["runtime", "backend"])
def test_a_16_mib_head_is_refused_fast_while_healthz_stays_fast(tmp_path: Path, cmd: str) -> None:
    """A 16 MiB request head gets 431 (or a closed connection) within a second, and another
    client's /healthz stays under 100 ms meanwhile."""
    if cmd == "runtime":
        ctx = fs_runtime(tmp_path)
    else:
        pytest.importorskip("yoi_workspace_server")
        ctx = server(BACKEND, "--data-dir", str(tmp_path / "b"))
    with ctx as (proc, url):
        host, port = address(url)
        import threading

        result: dict[str, Any] = {}

        def attack() -> None:
            result["received"], result["elapsed"] = _send_huge_head(host, port, 16 * 1024 * 1024)

        worst = 0.0
        with httpx.Client(base_url=url, timeout=5) as client:
            client.get("/healthz")  # warm the connection
            thread = threading.Thread(target=attack)
            thread.start()
            while thread.is_alive():
                t0 = time.monotonic()
                assert client.get("/healthz").status_code == 200
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.005)
            thread.join()
        received: bytes = result["received"]
        assert received == b"" or received.startswith(b"HTTP/1.1 431"), received[:200]
        if received:
            assert b'"request_head_too_large"' in received
        assert result["elapsed"] < 1.0, result["elapsed"]
        assert worst < 0.1, worst
        assert proc.poll() is None


def test_a_head_just_under_the_cap_is_served_and_one_over_is_431(tmp_path: Path) -> None:
    """--max-head-bytes bounds the request line plus headers: a head under it is answered
    normally, a head over it gets 431 request_head_too_large."""
    with fs_runtime(tmp_path, "--max-head-bytes", "4096") as (_proc, url):
        ok = httpx.get(f"{url}/v1/runtime", headers={**AUTH, "X-Pad": "p" * 3000}, timeout=5)
        assert ok.status_code == 200
        too_big = httpx.get(f"{url}/v1/runtime", headers={**AUTH, "X-Pad": "p" * 5000}, timeout=5)
        assert too_big.status_code == 431
        assert too_big.json()["error"]["code"] == "request_head_too_large"
        long_url = httpx.get(f"{url}/v1/workers?x={'q' * 5000}", headers=AUTH, timeout=5)
        assert long_url.status_code == 431


@pytest.mark.parametrize(
    "flag", ["--header-timeout-s", "--idle-timeout-s", "--max-connections", "--max-head-bytes"]
)
def test_bad_limit_values_exit_2(flag: str) -> None:
    """A limit flag that is not a positive number exits 2 with a one-line reason."""
    result = subprocess.run(
        [*RUNTIME, flag, "0"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert flag in result.stderr


def test_each_kind_of_held_connection_is_closed_by_its_timeout(tmp_path: Path) -> None:
    """A connection that sends nothing, a partial head, an announced body that never comes, or
    nothing after a kept-alive response is open at 0.4 s and closed by the 1 s timeouts
    within 3 s; an event stream that is idle stays open."""
    with fs_runtime(tmp_path, "--header-timeout-s", "1", "--idle-timeout-s", "1") as (
        _proc,
        url,
    ):
        host, port = address(url)
        starts = {
            "nothing": b"",
            "partial head": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: b",
            "no body": b"POST /v1/workers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{",
            "kept alive": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        if importlib.util.find_spec("sse_starlette") is not None:  # the event-stream extra
            starts["stream"] = (
                b"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\n\r\n"
            )
        socks = {}
        for name, first in starts.items():
            sock = socket.create_connection((host, port), timeout=5)
            if first:
                sock.sendall(first)
            socks[name] = sock
        try:
            time.sleep(0.4)
            for name, sock in socks.items():
                assert not is_closed_by_peer(sock, time.monotonic() + 0.05), name
            deadline = time.monotonic() + 3
            for name, sock in socks.items():
                if name != "stream":
                    assert is_closed_by_peer(sock, deadline), name
            if "stream" in socks:
                assert not is_closed_by_peer(socks["stream"], time.monotonic() + 0.2)
        finally:
            for sock in socks.values():
                sock.close()


def test_a_descriptor_reserve_above_the_limit_is_refused_at_start() -> None:
    """An --fd-reserve that leaves almost no descriptor for connections exits 1 clearly."""
    result = subprocess.run(
        [*RUNTIME, "--bind", "127.0.0.1:0", "--token-env", "PATH", "--fd-reserve", "250"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=_low_fd_limit,
    )
    assert result.returncode == 1
    assert "--fd-reserve 250" in result.stderr
    assert "Traceback" not in result.stderr
