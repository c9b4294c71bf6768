"""Baseline server for bench/http.py and bench/stream.py: a minimal raw ASGI app served exactly
as yoi-runtime serves its app (pre-bound TCP socket, uvicorn with httptools, uvloop when
installed, no access log, no lifespan). ``GET /events?n=N`` streams N Server-Sent Events of a
yoi event's size, one ASGI message each, as fast as it can; any other request reads the body
and answers a small JSON. Prints the bound URL, then serves until SIGTERM."""

from __future__ import annotations

import signal
import socket
from typing import Any

import anyio
import uvicorn

BODY = b'{"ack":{"worker_ref":{"runtime_id":"bench","worker_id":"w"},"turn_id":null}}'


#: An output_delta event as yoi-runtime sends it, with the position as the only variable.
SSE_EVENT = (
    "id: aaaaaaaaaaaaaaaa-{pos:x}\nevent: output_delta\ndata: "
    '{{"cursor":"aaaaaaaaaaaaaaaa-{pos:x}","kind":"output_delta","runtime_id":"local",'
    '"worker_id":"wkr_0123456789abcdef0123","turn_id":"turn_0123456789abcdef",'
    '"at":"2026-11-22T14:25:24.961066Z","data":{{"text":"w{pos} "}}}}\n\n'
)


async def events(n: int, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
    for pos in range(1, n + 1):
        body = SSE_EVENT.format(pos=pos).encode()
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/events":
        await events(int(scope["query_string"].decode().partition("=")[2] or 0), send)
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


class Server(uvicorn.Server):
    def capture_signals(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = Server(config)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    async with anyio.create_task_group() as tg:

        async def stop() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    server.should_exit = True
                    return

        tg.start_soon(stop)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    anyio.run(main, backend_options=options)
