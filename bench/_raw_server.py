"""Baseline server for bench/http.py: a minimal raw ASGI app (reads the body, answers a small
JSON) served exactly as yoi-runtime serves its app (pre-bound TCP socket, uvicorn with
httptools, uvloop when installed, no access log, no lifespan). Prints the bound URL, then
serves until SIGTERM."""

from __future__ import annotations

import signal
import socket
from typing import Any

import anyio
import uvicorn

BODY = b'{"ack":{"worker_ref":{"runtime_id":"bench","worker_id":"w"},"turn_id":null}}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
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
