"""The Backend's transport bounds a remote's replies (real loopback sockets): decoded and
wire caps, line caps on streams, encodings, redirects, and an overall command deadline."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from worker_runtime import RuntimeUnavailable
from yoi_workspace_server._transport import AiohttpTransport, ReplyLimits

pytestmark = pytest.mark.anyio

LIMITS = ReplyLimits(deadline_s=1.0, max_reply_bytes=64 * 1024, max_line_bytes=1024)


@asynccontextmanager
async def server(reply: Callable[[], bytes]) -> AsyncIterator[str]:
    """A loopback server that reads one request head and sends ``reply()``."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def serve(stream: SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            try:
                await stream.send(reply())
                await anyio.sleep(5)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"http://127.0.0.1:{port}/"
        tg.cancel_scope.cancel()


def http(body: bytes, *, status: int = 200, **headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}"]
    head += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def command(url: str) -> httpx.Response:
    transport = AiohttpTransport(limits=LIMITS)
    try:
        return await transport.handle_async_request(httpx.Request("GET", url))
    finally:
        await transport.aclose()


async def reason_of(url: str) -> str:
    with pytest.raises(RuntimeUnavailable) as caught:
        await command(url)
    return str(caught.value.details["reason"])


async def test_encoded_replies_are_decoded_within_the_cap() -> None:
    """gzip and deflate bodies are decoded; the headers no longer claim an encoding."""
    body = json.dumps({"ok": True}).encode()
    for encoded, name in ((gzip.compress(body), "gzip"), (zlib.compress(body), "deflate")):
        async with server(lambda e=encoded, n=name: http(e, content_encoding=n)) as url:
            response = await command(url)
        assert response.json() == {"ok": True}
        assert "content-encoding" not in response.headers


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda: http(b"x" * 70_000), "reply_too_large"),
        (lambda: http(gzip.compress(bytes(10**7)), content_encoding="gzip"), "reply_too_large"),
        (lambda: http(gzip.compress(b"{}")[:-6], content_encoding="gzip"), "bad_reply"),
        (lambda: http(b"{}", content_encoding="gzip"), "bad_reply"),
        (lambda: http(b"{}", content_encoding="br"), "bad_reply"),
        (lambda: http(b"", status=302, location="http://elsewhere/"), "redirect"),
        (lambda: b"HTTP/1.1 200 X\r\ncontent-length: 100\r\n\r\n{", "timeout"),
        (lambda: b"NOT HTTP AT ALL\r\n\r\n", "bad_reply"),
    ],
    ids=["wire-cap", "decoded-cap", "truncated-gzip", "not-gzip", "unknown-encoding",
         "redirect", "deadline", "garbage"],
)  # fmt: skip
async def test_a_reply_that_breaks_a_bound_is_a_typed_reason(
    reply: Callable[[], bytes], reason: str
) -> None:
    """Each bound a reply can break is ``runtime_unavailable`` with its own reason, within the
    deadline."""
    async with server(reply) as url:
        with anyio.fail_after(3):
            assert await reason_of(url) == reason


async def test_stream_lines_are_capped_but_not_the_stream() -> None:
    """A stream of many short lines (more in all than the line cap) reads to its end; one line
    over the cap is ``line_too_large``."""
    lines = b"data: x\n\n" * 1000
    long_line = b"data: " + b"y" * 2000 + b"\n\n"
    for body, ok in ((lines, True), (lines + long_line, False)):
        async with server(lambda b=body: http(b, content_type="text/event-stream")) as url:
            transport = AiohttpTransport(limits=LIMITS, stream=True)
            try:
                response = await transport.handle_async_request(httpx.Request("GET", url))
                if ok:
                    assert len(await response.aread()) == len(lines)
                else:
                    with pytest.raises(RuntimeUnavailable) as caught:
                        await response.aread()
                    assert caught.value.details["reason"] == "line_too_large"
                await response.aclose()
            finally:
                await transport.aclose()
