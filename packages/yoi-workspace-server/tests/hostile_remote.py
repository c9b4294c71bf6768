"""A hostile "remote Runtime" for the Backend's tests: a real HTTP server on loopback that
answers like a yoi-runtime (valid shapes, made by a real in-memory Runtime) until told to
misbehave. Run as ``python hostile_remote.py RUNTIME_ID``; it prints ``listening on URL``.

``PUT /_mode/commands/<mode>`` sets what every command route answers:

- ``good``: what a Runtime would answer;
- ``empty``: ``{}``; ``nested``: 200,000 nested ``[``; ``badgzip``: ``Content-Encoding:
  gzip`` over bytes that are not gzip;
- ``drip``: headers, then one byte of the body every 0.5 s, forever;
- ``huge``: an endless chunked body (300 MB and more); ``bomb``: 0.5 MB of gzip that
  inflates to 512 MiB;
- ``redirect``: ``307`` to another host;
- ``slow_list``: like ``good``, but ``GET /v1/workers`` drips;
- ``spoof``: like ``good``, but the Worker list labels every row as the embedded Runtime's.

``PUT /_mode/events/<mode>`` sets what a Worker's event stream sends: ``good`` (three events,
then heartbeats), ``spoof`` (an event labelled as the embedded Runtime's, one of another
Worker, then a good one), ``surrogate`` (an event with a lone surrogate, then a good one),
``endless`` (one ``data:`` line that never ends).
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from typing import Any

from worker_runtime import CreateWorkerRequest, Runtime

DRIP_S = 0.5


class State:
    def __init__(self, runtime_id: str) -> None:
        self.runtime_id = runtime_id
        self.commands = "good"
        self.events = "good"
        self.replies: dict[str, bytes] = {}
        self.spoofed_list = b""
        self.worker_id = ""
        self.incarnation = ""
        self._bomb: bytes | None = None

    async def prepare(self) -> None:
        """Valid replies, made once by a real in-memory Runtime of this runtime_id."""
        async with Runtime(runtime_id=self.runtime_id) as runtime:
            worker = await runtime.create_worker(CreateWorkerRequest(name="hostile worker"))
            self.worker_id = worker.worker_id
            summary = await runtime.summary()
            self.incarnation = summary.incarnation
            page = await runtime.list_workers()
            detail = await runtime.get_worker(runtime.ref(worker.worker_id))

            def dump(value: Any) -> bytes:
                return json.dumps(value).encode()

            spoofed = page.model_dump(mode="json")
            for row in spoofed["workers"]:
                row["runtime_id"] = row["worker_ref"]["runtime_id"] = "backend-internal"
            self.spoofed_list = json.dumps(spoofed).encode()
            self.replies = {
                "/healthz": dump({"status": "ok"}),
                "/v1/runtime": dump({"runtime": summary.model_dump(mode="json")}),
                "/v1/workers": dump(page.model_dump(mode="json")),
                f"/v1/workers/{worker.worker_id}": dump({"worker": detail.model_dump(mode="json")}),
            }

    def bomb(self) -> bytes:
        if self._bomb is None:
            gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            zeros = b"\0" * (1 << 20)
            self._bomb = b"".join(gz.compress(zeros) for _ in range(512)) + gz.flush()
        return self._bomb

    def event(self, n: int, text: str, **overrides: Any) -> bytes:
        fields = {
            "cursor": f"{self.incarnation}-{n:x}",
            "kind": "output_delta",
            "runtime_id": self.runtime_id,
            "worker_id": self.worker_id,
            "turn_id": None,
            "at": "2026-12-01T00:00:00.000000Z",
            "data": {"text": text},
            **overrides,
        }
        data = json.dumps(fields)  # ensure_ascii: a lone surrogate goes out as \\ud800
        return f"id: {fields['cursor']}\nevent: output_delta\ndata: {data}\n\n".encode()


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return method, target.split("?", 1)[0], body


async def send_json(writer: asyncio.StreamWriter, status: int, body: bytes, **extra: str) -> None:
    headers = {"content-type": "application/json", "content-length": str(len(body)), **extra}
    writer.write(head(status, headers) + body)
    await writer.drain()


async def drip(writer: asyncio.StreamWriter) -> None:
    writer.write(head(200, {"content-type": "application/json", "content-length": "1000000"}))
    while not writer.is_closing():  # drain() does not raise on a transport being closed
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(DRIP_S)


async def endless_chunks(writer: asyncio.StreamWriter, content_type: str, first: bytes) -> None:
    writer.write(head(200, {"content-type": content_type, "transfer-encoding": "chunked"}))
    chunk = b"[" * 65536
    piece = f"{len(first):x}\r\n".encode() + first + b"\r\n" if first else b""
    writer.write(piece)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    while not writer.is_closing():
        writer.write(frame)
        await writer.drain()


async def command(state: State, writer: asyncio.StreamWriter, method: str, path: str) -> None:
    mode = state.commands
    if mode == "slow_list" and path == "/v1/workers":
        mode = "drip"
    elif mode == "slow_list":
        mode = "good"
    if mode == "good":
        reply = state.replies.get(path)
        if reply is None:
            envelope = {"error": {"code": "worker_not_found", "message": "no such worker"}}
            await send_json(writer, 404, json.dumps(envelope).encode())
        else:
            await send_json(writer, 200, reply)
    elif mode == "spoof" and path == "/v1/workers":
        await send_json(writer, 200, state.spoofed_list)
    elif mode == "spoof":
        await send_json(writer, 200, state.replies.get(path, b"{}"))
    elif mode == "empty":
        await send_json(writer, 200, b"{}")
    elif mode == "nested":
        await send_json(writer, 200, b"[" * 200_000)
    elif mode == "badgzip":
        await send_json(writer, 200, b'{"runtime": {}}' * 10, **{"content-encoding": "gzip"})
    elif mode == "drip":
        await drip(writer)
    elif mode == "huge":
        await endless_chunks(writer, "application/json", b"")
    elif mode == "bomb":
        await send_json(writer, 200, state.bomb(), **{"content-encoding": "gzip"})
    elif mode == "redirect":
        await send_json(writer, 307, b"", location="http://169.254.169.254/latest/")
    else:
        await send_json(writer, 500, b"unknown mode")


async def events(state: State, writer: asyncio.StreamWriter) -> None:
    mode = state.events
    headers = {"content-type": "text/event-stream", "cache-control": "no-store"}
    if mode == "endless":
        await endless_chunks(writer, "text/event-stream", b"data: ")
        return
    writer.write(head(200, headers) + b"retry: 2000\n\n")
    if mode == "good":
        frames = [state.event(1, "one"), state.event(2, "two"), state.event(3, "three")]
    elif mode == "spoof":
        frames = [
            state.event(
                1,
                "spoofed runtime",
                runtime_id="backend-internal",
                data={"text": "spoofed runtime", "worker": {"runtime_id": "backend-internal"}},
            ),
            state.event(2, "another worker", worker_id="someone-else"),
            state.event(3, "after"),
        ]
    elif mode == "surrogate":
        frames = [state.event(1, "\ud800 lone"), state.event(2, "after")]
    else:
        frames = []
    for frame in frames:
        writer.write(frame)
    while not writer.is_closing():
        writer.write(b": heartbeat\n\n")
        await writer.drain()
        await asyncio.sleep(1.0)


async def handle(state: State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await read_request(reader)
            if request is None:
                return
            method, path, _ = request
            if method == "PUT" and path.startswith("/_mode/"):
                _, _, which, mode = path.split("/", 3)
                if mode == "bomb":
                    state.bomb()  # made before the first request that sends it
                setattr(state, which, mode)
                await send_json(writer, 200, b'{"ok": true}')
            elif path.endswith("/events"):
                await events(state, writer)
                return
            else:
                await command(state, writer, method, path)
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main(runtime_id: str) -> None:
    state = State(runtime_id)
    await state.prepare()
    server = await asyncio.start_server(
        lambda r, w: handle(state, r, w), "127.0.0.1", 0, limit=1 << 20
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
