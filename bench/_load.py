"""What the HTTP benchmarks share: starting a server process, a light keep-alive HTTP/1.1
connection on asyncio streams (httpx is too slow to measure a fast server), percentiles."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

TOKEN = "bench-token-0123456789"


def runtime_command(*extra: str) -> list[str]:
    """A ``yoi-runtime`` on a free port of 127.0.0.1 with the bench token (memory store, echo
    profile), plus ``extra`` arguments."""
    return [
        sys.executable, "-m", "worker_runtime.cli", "--bind", "127.0.0.1:0",
        "--token-env", "BENCH_TOKEN", "--log-level", "warning", *extra,
    ]  # fmt: skip


@contextmanager
def server(command: list[str]) -> Iterator[tuple[str, int]]:
    """Start ``command`` (it prints its URL on its first line); yields (host, port)."""
    with server_process(command) as (host, port, _pid):
        yield host, port


@contextmanager
def server_process(command: list[str]) -> Iterator[tuple[str, int, int]]:
    """:func:`server`, also yielding the process id (for :func:`cpu_seconds`)."""
    env = {**os.environ, "BENCH_TOKEN": TOKEN}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        match = re.search(r"http://([\d.]+):(\d+)", proc.stdout.readline())
        assert match, "the server did not start"
        yield match.group(1), int(match.group(2)), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far; ``None`` where ``/proc`` is not
    there to ask."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def open_stream(self, path: str) -> int:
        """Send a GET for a streamed (chunked) response; returns the status once the headers
        are read. Read the body with :meth:`chunk`."""
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n"
            f"accept: text/event-stream\r\n\r\n".encode()
        )
        status = int((await self.reader.readline()).split()[1])
        while (await self.reader.readline()) not in (b"\r\n", b""):
            pass
        return status

    async def chunk(self) -> bytes:
        """The next chunk of a chunked body (b"" at its end)."""
        size = int((await self.reader.readline()).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    def close(self) -> None:
        self.writer.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
