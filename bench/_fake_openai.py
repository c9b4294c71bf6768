"""A fake OpenAI-compatible server for bench/providers.py: ``POST /v1/chat/completions``
streams ``n`` one-word deltas as fast as it can, then usage and ``[DONE]``, where the request's
model is ``deltas-<n>``. Prints its URL on the first line; SIGTERM stops it."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

# bench/ holds an http.py: keep it from shadowing the standard library's.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402


def _chunk(delta: dict[str, str], usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


_WORD = _chunk({"content": "word "})


async def completions(request: Request) -> StreamingResponse:
    n = int(json.loads(await request.body())["model"].removeprefix("deltas-"))

    async def frames():  # type: ignore[no-untyped-def]
        # Batches of frames per write, as a real server's network buffer would carry them.
        yield _chunk({"role": "assistant", "content": ""})
        for start in range(0, n, 64):
            yield _WORD * min(64, n - start)
        yield _chunk({}, {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(frames(), media_type="text/event-stream")


def main() -> None:
    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"fake openai on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", http="httptools", loop="uvloop")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
