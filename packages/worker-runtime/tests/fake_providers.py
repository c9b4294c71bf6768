"""Local stand-ins for the model providers' HTTP APIs: a real uvicorn server on loopback that
speaks OpenAI chat completions (streaming SSE) and Anthropic messages (streaming SSE).

A test queues what the next requests get (:class:`Reply`) and reads what the server saw: each
request's JSON body and headers, and when a streaming response was cut off by the client.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .servers import serve_app


@dataclass
class Reply:
    """One scripted answer. ``status`` other than 200 answers an error body (echoing the
    request's credentials, as real providers partly do); otherwise the reply streams
    ``deltas`` (``delay_s`` before each), then usage, unless ``cut_after`` deltas were sent:
    then the connection is dropped mid-stream."""

    deltas: list[str] = field(default_factory=lambda: ["Hello", " there"])
    usage: tuple[int, int] = (11, 2)
    delay_s: float = 0.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None


class FakeProvider:
    """With ``reflect_key_header`` set, every streamed reply carries that response header with
    the request's credential in it (a careless provider; logs must never show it)."""

    def __init__(self, reflect_key_header: str | None = None) -> None:
        self.reflect_key_header = reflect_key_header
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnected_at: list[float] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _take(self, request: Request) -> Reply:
        self.requests.append(json.loads(await request.body()))
        self.headers.append(dict(request.headers))
        return self.replies.popleft() if self.replies else Reply()

    def _reflected(self, request: Request) -> dict[str, str] | None:
        if self.reflect_key_header is None:
            return None
        credential = request.headers.get("authorization") or request.headers.get("x-api-key")
        return {self.reflect_key_header: credential or ""}

    def _error(self, reply: Reply, request: Request, kind: str) -> Response:
        credential = request.headers.get("authorization") or request.headers.get("x-api-key")
        message = f"Incorrect API key provided: {credential}"
        if kind == "openai":
            body: dict[str, Any] = {"error": {"message": message, "type": "error"}}
        else:
            body = {"type": "error", "error": {"type": "error", "message": message}}
        return JSONResponse(body, status_code=reply.status, headers=reply.headers)

    async def _stream(self, reply: Reply, frames: list[bytes], tail: list[bytes]) -> Any:
        try:
            for i, frame in enumerate(frames):
                if reply.cut_after is not None and i == reply.cut_after:
                    raise _Cut
                if reply.delay_s:
                    await anyio.sleep(reply.delay_s)
                yield frame
            for frame in tail:
                yield frame
        except anyio.get_cancelled_exc_class():
            self.disconnected_at.append(time.monotonic())
            raise

    async def _openai(self, request: Request) -> Response:
        reply = await self._take(request)
        if reply.status != 200:
            return self._error(reply, request, "openai")
        model = self.requests[-1].get("model", "m")

        def chunk(delta: dict[str, Any], usage: Any = None, choices: bool = True) -> bytes:
            body: dict[str, Any] = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if choices else [],
            }
            if usage is not None:
                body["usage"] = usage
            return b"data: " + json.dumps(body).encode() + b"\n\n"

        frames = [chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"content": d}) for d in reply.deltas]
        usage = {
            "prompt_tokens": reply.usage[0],
            "completion_tokens": reply.usage[1],
            "total_tokens": sum(reply.usage),
        }
        tail = [chunk({}, usage=usage, choices=False), b"data: [DONE]\n\n"]
        if reply.cut_after is not None:
            reply.cut_after += 1  # the role chunk comes first
        return _Streaming(
            self._stream(reply, frames, tail),
            media_type="text/event-stream",
            headers=self._reflected(request),
        )

    async def _anthropic(self, request: Request) -> Response:
        reply = await self._take(request)
        if reply.status != 200:
            return self._error(reply, request, "anthropic")
        model = self.requests[-1].get("model", "m")

        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        start = event(
            "message_start",
            {
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": reply.usage[0], "output_tokens": 1},
                }
            },
        )
        block = event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        frames = [start, block] + [
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": d}})
            for d in reply.deltas
        ]
        tail = [
            event("content_block_stop", {"index": 0}),
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": reply.usage[1]},
                },
            ),
            event("message_stop", {}),
        ]
        if reply.cut_after is not None:
            reply.cut_after += 2  # message_start and content_block_start come first
        return _Streaming(
            self._stream(reply, frames, tail),
            media_type="text/event-stream",
            headers=self._reflected(request),
        )


class _Cut(Exception):
    """Drop the connection mid-stream."""


class _Streaming(StreamingResponse):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _Cut:
            # Leave without finishing the chunked body: uvicorn closes the connection.
            raise RuntimeError("cut") from None


@asynccontextmanager
async def fake_provider(
    reflect_key_header: str | None = None,
) -> AsyncIterator[tuple[FakeProvider, str]]:
    """Serve a :class:`FakeProvider`; yields it and its root URL (OpenAI's SDK wants
    ``root + "/v1"``, Anthropic's the root)."""
    provider = FakeProvider(reflect_key_header)
    async with serve_app(provider.app, abort_connections=True) as url:
        yield provider, url
