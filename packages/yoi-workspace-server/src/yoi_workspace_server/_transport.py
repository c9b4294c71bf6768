"""An httpx transport over aiohttp, for the Backend's calls to remote runtimes.

:class:`~worker_runtime.client.RuntimeClient` speaks httpx; its default transport (httpcore)
costs about a millisecond of CPU per request on a small machine, more than the remote runtime
spends on the command itself. aiohttp's client (C-accelerated HTTP parsing, a cheap
connection pool) does the same for a fraction of that, so the Backend hands this transport to
each remote's client: the client's API, errors and SSE handling stay the same.

A remote is not trusted, so the transport bounds what one can make the Backend do
(:class:`ReplyLimits`):

- a **command** (``stream=False``) is read whole inside one overall deadline (connect, headers
  and every byte of the body: a remote dripping one byte at a time cannot stretch it);
- a reply body is capped on the wire and again once decoded (gzip/deflate are decoded here,
  with the cap applied while inflating, so a small bomb cannot expand); another encoding is
  refused;
- a **stream** (``stream=True``) has no overall deadline, only the idle read timeout; each of
  its lines is capped instead;
- a redirect is never followed.

Breaking a bound is :class:`~worker_runtime.RuntimeUnavailable` with a ``details.reason``
(``timeout``, ``reply_too_large``, ``line_too_large``, ``bad_reply``, ``redirect``), which
the client passes on as it is. aiohttp's own errors become the httpx errors the client
already maps: timeouts to ``httpx.TimeoutException``, everything else to
``httpx.TransportError``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import httpx

from worker_runtime import RuntimeUnavailable

__all__ = ["AiohttpTransport", "ReplyLimits"]

_DROP = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})

_MESSAGES = {
    "timeout": "the runtime did not answer within the deadline",
    "reply_too_large": "the runtime's reply is over the Backend's size cap",
    "line_too_large": "the runtime's event stream has a line over the Backend's cap",
    "bad_reply": "the runtime's reply could not be decoded",
    "redirect": "the runtime answered with a redirect, which the Backend does not follow",
}


def unavailable(reason: str, **details: Any) -> RuntimeUnavailable:
    """The typed error of a remote that broke a bound (``reason`` one of the above)."""
    return RuntimeUnavailable(_MESSAGES[reason], details={"reason": reason, **details})


@dataclass(frozen=True)
class ReplyLimits:
    """What a remote's reply may cost. ``deadline_s``: a whole command; ``max_reply_bytes``:
    a command's body, on the wire and decoded; ``max_line_bytes``: one line of an event
    stream, decoded."""

    deadline_s: float = 5.0
    max_reply_bytes: int = 16 * 1024 * 1024
    max_line_bytes: int = 4 * 1024 * 1024


_BREAK = re.compile(rb"[\r\n]")
_PIECE = 64 * 1024  # inflate at most this much at a time


class _Decoder:
    """Undoes a ``Content-Encoding`` piece by piece, each piece passed to ``check`` before the
    next is inflated, and the decoded total capped (``cap``): a small bomb stops at the cap."""

    def __init__(self, encoding: str, cap: int | None) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._inflate: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise unavailable("bad_reply")
        self._cap = cap
        self._total = 0

    def _count(self, piece: bytes) -> bytes:
        self._total += len(piece)
        if self._cap is not None and self._total > self._cap:
            raise unavailable("reply_too_large", max_reply_bytes=self._cap)
        return piece

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._inflate is None:
            yield self._count(chunk)
            return
        data = chunk
        while data:
            try:
                piece = self._inflate.decompress(data, _PIECE)
            except zlib.error:
                raise unavailable("bad_reply") from None
            yield self._count(piece)
            data = self._inflate.unconsumed_tail

    def end(self) -> bytes:
        if self._inflate is None:
            return b""
        try:
            tail = bytes(self._inflate.flush())
        except zlib.error:
            raise unavailable("bad_reply") from None
        if not self._inflate.eof:
            raise unavailable("bad_reply")  # a truncated body, or not that encoding at all
        return self._count(tail)


class _StreamBody(httpx.AsyncByteStream):
    """A stream's body, decoded, with every line capped."""

    def __init__(self, response: aiohttp.ClientResponse, decoder: _Decoder, max_line: int):
        self._response = response
        self._decoder = decoder
        self._max_line = max_line
        self._line = 0  # bytes since the last line break

    def _check(self, data: bytes) -> bytes:
        if self._line + len(data) <= self._max_line:  # no line in it can be over the cap
            cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
            self._line = len(data) - cut - 1 if cut >= 0 else self._line + len(data)
            return data
        line, prev = self._line, -1
        for match in _BREAK.finditer(data):
            if line + match.start() - prev - 1 > self._max_line:
                break
            line, prev = 0, match.start()
        else:
            line += len(data) - prev - 1
            if line <= self._max_line:
                self._line = line
                return data
        raise unavailable("line_too_large", max_line_bytes=self._max_line)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                for piece in self._decoder.feed(chunk):
                    if self._check(piece):
                        yield piece
            tail = self._check(self._decoder.end())
            if tail:
                yield tail
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; a stream left early
        # (an SSE stream that is cancelled) drops it, since it may still carry data.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests with one lazily created ``aiohttp.ClientSession`` of at most
    ``max_connections`` connections. ``stream``: the transport of event streams (no overall
    deadline, lines capped); otherwise of commands (read whole within the deadline)."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        limits: ReplyLimits | None = None,
        stream: bool = False,
    ) -> None:
        self._max_connections = max_connections
        self._limits = limits or ReplyLimits()
        self._stream = stream
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None, float | None], Any] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                auto_decompress=False,  # decoded here, with the size cap
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._stream:
            return await self._send(request)
        try:
            with anyio.fail_after(self._limits.deadline_s):
                return await self._send(request)
        except TimeoutError:
            raise unavailable("timeout", deadline_s=self._limits.deadline_s) from None

    async def _send(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        key = (timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:  # one per distinct setting (a client has two: commands, streams)
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _DROP]
        body = await request.aread()
        try:
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
                max_line_size=16 * 1024,
                max_field_size=16 * 1024,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ClientResponseError:
            raise unavailable("bad_reply") from None  # a malformed status line or header
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        if 300 <= response.status < 400:
            response.close()
            raise unavailable("redirect")
        try:
            decoder = _Decoder(
                response.headers.get("content-encoding", ""),
                # A stream's lines are capped instead; its error reply is a whole body.
                None if self._stream and response.status == 200 else self._limits.max_reply_bytes,
            )
        except RuntimeUnavailable:
            response.close()
            raise
        headers_out = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in response.raw_headers
            if k.decode("latin-1").lower() not in ("content-encoding", "content-length")
        ]
        if self._stream:
            return httpx.Response(
                status_code=response.status,
                headers=headers_out,
                stream=_StreamBody(response, decoder, self._limits.max_line_bytes),
                extensions={"http_version": b"HTTP/1.1"},
            )
        content = await self._read_whole(response, decoder, request)
        return httpx.Response(
            status_code=response.status,
            headers=headers_out,
            content=content,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _read_whole(
        self, response: aiohttp.ClientResponse, decoder: _Decoder, request: httpx.Request
    ) -> bytes:
        cap = self._limits.max_reply_bytes
        declared = response.content_length
        if declared is not None and declared > cap:
            response.close()
            raise unavailable("reply_too_large", max_reply_bytes=cap)
        parts: list[bytes] = []
        wire = 0
        try:
            async for chunk in response.content.iter_any():
                wire += len(chunk)
                if wire > cap:
                    raise unavailable("reply_too_large", max_reply_bytes=cap)
                parts.extend(decoder.feed(chunk))
            parts.append(decoder.end())
        except RuntimeUnavailable:
            response.close()
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            response.close()
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            response.close()
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            response.close()  # cancelled (the deadline): the connection may carry more
            raise
        response.release()
        return b"".join(parts)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
