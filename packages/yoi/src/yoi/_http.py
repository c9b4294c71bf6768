"""The CLI's transport: a blocking HTTP/1.1 client on the standard library's ``http.client``
(:class:`_Http`), its typed failure (:class:`ApiError`), and one event-stream connection
(:class:`EventStream`). Nothing beyond the standard library is imported (see :mod:`yoi._api`)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

JSON = dict[str, Any]

#: How long one command may take before the server counts as not answering.
COMMAND_TIMEOUT_S = 30.0
#: A stream silent this long (no event, no heartbeat: the server sends one every 15 s) is
#: reconnected.
STREAM_IDLE_S = 45.0


class ApiError(Exception):
    """A typed failure: the API's error ``code`` and ``message`` (never a traceback)."""

    def __init__(self, code: str, message: str, details: JSON | None = None, status: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status


def _unreachable(url: str, what: str) -> ApiError:
    return ApiError("unreachable", f"nothing answers at {url} ({what})")


class _Http:
    """Keep-alive JSON requests and SSE streams to one base URL, with a bearer token."""

    def __init__(self, base_url: str, token: str | None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError("invalid_input", f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None
        self.unauthorized_hint: str | None = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(self, method: str, path: str, body: JSON | None = None, **query: Any) -> JSON:
        target = self._target(path, query)
        headers = dict(self._headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    self._conn = self._connect(COMMAND_TIMEOUT_S)
                self._conn.request(method, target, body=payload, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a kept-alive connection the server closed: once more, fresh
                if attempt:
                    raise _unreachable(self.base_url, "the connection was closed") from None
            except TimeoutError:
                self.close()
                raise _unreachable(self.base_url, "timed out") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise _unreachable(self.base_url, _why(exc)) from None
        if response.status >= 400:
            raise self._error(response.status, data)
        try:
            value = json.loads(data)
        except ValueError:
            raise ApiError(
                "internal_error", "the server answered with a body that is not JSON"
            ) from None
        if not isinstance(value, dict):
            raise ApiError("internal_error", "the server answered with an unexpected body")
        return value

    def open_stream(self, path: str, cursor: str | None) -> Iterator[tuple[str, str]]:
        """One SSE connection: ``(event, data)`` pairs; errors before the stream starts are
        :class:`ApiError`; a dropped connection ends the iterator with ``unreachable``."""
        target = self._target(path, {"cursor": cursor})
        try:
            conn = self._connect(STREAM_IDLE_S)
            conn.request("GET", target, headers={**self._headers, "Accept": "text/event-stream"})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(self.base_url, _why(exc)) from None
        if response.status != 200:
            data = response.read()
            conn.close()
            raise self._error(response.status, data)
        return self._messages(conn, response)

    @staticmethod
    def _messages(
        conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> Iterator[tuple[str, str]]:
        event, data = "message", list[str]()
        try:
            while True:
                try:
                    raw = response.readline()
                except (OSError, http.client.HTTPException, ValueError):
                    raise ApiError("unreachable", "the event stream was cut") from None
                if not raw:
                    raise ApiError("unreachable", "the event stream ended")
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", list[str]()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith("event:"):
                    event = line[6:].strip()
        finally:
            conn.close()

    def _error(self, status: int, data: bytes) -> ApiError:
        error = _error_of(status, data)
        if error.code == "unauthorized" and self.unauthorized_hint:
            error.message = self.unauthorized_hint
        return error

    def _target(self, path: str, query: dict[str, Any]) -> str:
        params = {k: v for k, v in query.items() if v is not None}
        target = self._prefix + path
        return f"{target}?{urlencode(params)}" if params else target

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    return getattr(exc, "strerror", None) or type(exc).__name__


def _error_of(status: int, data: bytes) -> ApiError:
    try:
        error = json.loads(data)["error"]
        return ApiError(
            str(error["code"]), str(error["message"]), error.get("details") or {}, status
        )
    except (ValueError, KeyError, TypeError):
        if status in (502, 503, 504):
            return ApiError("runtime_unavailable", f"the server answered {status}", {}, status)
        return ApiError("internal_error", f"the server answered {status}", {}, status)


class EventStream:
    """One event-stream connection: a context manager and an iterator of events (dicts), the
    blocking twin of ``worker_runtime.api.EventStream``. Entering it opens the stream and
    raises what the server refuses (the Worker, the cursor); leaving it closes the stream."""

    def __init__(self, client: _Http, path: str, cursor: str | None) -> None:
        self._client, self._path, self._cursor = client, path, cursor
        self._messages: Iterator[tuple[str, str]] | None = None

    def __enter__(self) -> EventStream:
        self._messages = self._client.open_stream(self._path, self._cursor)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        messages, self._messages = self._messages, None
        if isinstance(messages, Generator):
            messages.close()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> JSON:
        if self._messages is None:
            raise RuntimeError("enter the event stream before iterating it")
        for kind, data in self._messages:
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict):
                event.setdefault("kind", kind)
                return event
        raise StopIteration
