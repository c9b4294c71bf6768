"""The CLI's client layer: one small interface, :class:`Api`, over the two HTTP APIs ``yoi``
can speak to, so every command is written once.

- :class:`BackendApi` speaks to a Workspace Backend (``yoi up``): ``/api/...`` routes, every
  runtime it serves, Backend cursors.
- :class:`RuntimeApi` speaks to one ``yoi-runtime`` directly: ``/v1/...`` routes, one runtime.

Both run over :class:`_Http`, a blocking HTTP/1.1 client on the standard library's
``http.client``: a command-line call makes a handful of requests, and importing httpx and
pydantic (``worker_runtime.client.RuntimeClient``) would cost more than the whole budget of
``yoi workers`` (300 ms). Values stay the JSON the API gave (dicts), so ``--json`` prints them
as they came.

Errors are :class:`ApiError` with the API's stable ``code``; a server that does not answer is
``code == "unreachable"``. This module is the seam a later single Runtime API replaces.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["Api", "ApiError", "BackendApi", "Ref", "RuntimeApi"]

JSON = dict[str, Any]

#: How long one command may take before the server counts as not answering.
COMMAND_TIMEOUT_S = 30.0
#: A stream silent this long (no event, no heartbeat: the server sends one every 15 s) is
#: reconnected.
STREAM_IDLE_S = 45.0
_SEEN = 8192


class ApiError(Exception):
    """A typed failure: the API's error ``code`` and ``message`` (never a traceback)."""

    def __init__(self, code: str, message: str, details: JSON | None = None, status: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status


@dataclass(frozen=True)
class Ref:
    """A Worker's authority: its runtime and its id."""

    runtime_id: str
    worker_id: str

    def __str__(self) -> str:
        return f"{self.runtime_id}/{self.worker_id}"


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


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass
class StreamState:
    """Where a followed stream is: the last cursor delivered, for a resume."""

    cursor: str | None
    reconnects: int = 0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)


class Api:
    """What every command needs from a Backend or a Runtime."""

    kind = ""

    def __init__(self, base_url: str, token: str | None) -> None:
        self._client = _Http(base_url, token)
        self.base_url = self._client.base_url

    def default_runtime(self) -> str:
        """The runtime commands go to when none is named."""
        raise NotImplementedError

    def runtimes(self) -> list[JSON]:
        raise NotImplementedError

    def add_runtime(self, runtime_id: str, url: str, token: str, name: str | None) -> JSON:
        raise ApiError("unsupported_operation", "only a Backend manages runtimes")

    def remove_runtime(self, runtime_id: str) -> None:
        raise ApiError("unsupported_operation", "only a Backend manages runtimes")

    def workers(self, runtime: str | None = None, status: str | None = None) -> list[JSON]:
        raise NotImplementedError

    def profiles(self, runtime: str) -> list[JSON]:
        raise NotImplementedError

    def create_worker(self, runtime: str, body: JSON) -> JSON:
        raise NotImplementedError

    def _w(self, ref: Ref, action: str = "") -> str:
        """The path of the Worker ``ref`` (and of its ``action``)."""
        raise NotImplementedError

    def get_worker(self, ref: Ref) -> JSON:
        return dict(self._client.request("GET", self._w(ref))["worker"])

    def send_input(self, ref: Ref, body: JSON) -> JSON:
        return dict(self._client.request("POST", self._w(ref, "input"), body)["ack"])

    def cancel(self, ref: Ref) -> JSON:
        return dict(self._client.request("POST", self._w(ref, "cancel"), {})["ack"])

    def stop(self, ref: Ref) -> JSON:
        return dict(self._client.request("POST", self._w(ref, "stop"), {})["ack"])

    def transcript(self, ref: Ref, start: int = 0, limit: int | None = None) -> JSON:
        path = self._w(ref, "transcript")
        return dict(self._client.request("GET", path, start=start, limit=limit)["transcript"])

    def _events_path(self, ref: Ref) -> str:
        return self._w(ref, "events")

    def close(self) -> None:
        self._client.close()

    def health(self) -> None:
        """Raise ``unreachable`` unless the server answers its open ``/healthz``."""
        self._client.request("GET", "/healthz")

    def events(
        self, ref: Ref, state: StreamState, *, follow_outages: bool = True
    ) -> Iterator[tuple[str, JSON]]:
        """The Worker's events after ``state.cursor`` as ``(kind, event)``, following the
        stream: on a drop, a timeout or a server restart it reconnects from the last cursor it
        delivered (backing off up to 2 s), and drops what it already delivered, so each event
        arrives once and in order. Notices (no cursor) come through too. A typed error that a
        reconnect cannot cure (not found, unauthorized, a bad cursor) is raised;
        ``follow_outages=False`` raises ``unreachable`` instead of retrying."""
        failures = 0
        path = self._events_path(ref)
        while True:
            try:
                messages = self._client.open_stream(path, state.cursor)
                failures = 0
                for kind, data in messages:
                    try:
                        event = json.loads(data)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    cursor = event.get("cursor")
                    if isinstance(cursor, str):
                        if cursor in state.seen:
                            continue
                        state.seen[cursor] = None
                        if len(state.seen) > _SEEN:
                            state.seen.popitem(last=False)
                        state.cursor = cursor
                    yield kind, event
                    code = (event.get("data") or {}).get("code")
                    if kind == "diagnostic" and code in ("resync_required", "cursor_expired"):
                        raise ApiError(code, str(event["data"].get("message", "")))
            except ApiError as exc:
                if exc.code not in ("unreachable", "runtime_unavailable"):
                    raise
                if not follow_outages:
                    raise
                failures += 1
                state.reconnects += 1
                if failures == 1:
                    yield "reconnecting", {"data": {"message": exc.message}}
                delay = min(2.0, 0.05 * 2 ** min(failures, 6))
                time.sleep(delay * (0.5 + random.random() / 2))


class BackendApi(Api):
    """A Workspace Backend (``yoi up``)."""

    kind = "backend"

    def default_runtime(self) -> str:
        return "backend-internal"

    def set_unauthorized_hint(self, hint: str) -> None:
        self._client.unauthorized_hint = hint

    def _w(self, ref: Ref, action: str = "") -> str:
        path = f"/api/runtimes/{_seg(ref.runtime_id)}/workers/{_seg(ref.worker_id)}"
        return f"{path}/{action}" if action else path

    def runtimes(self) -> list[JSON]:
        return list(self._client.request("GET", "/api/runtimes")["runtimes"])

    def add_runtime(self, runtime_id: str, url: str, token: str, name: str | None) -> JSON:
        body = {"runtime_id": runtime_id, "base_url": url, "token": token}
        if name:
            body["display_name"] = name
        return dict(self._client.request("POST", "/api/runtimes", body)["runtime"])

    def remove_runtime(self, runtime_id: str) -> None:
        self._client.request("DELETE", f"/api/runtimes/{_seg(runtime_id)}")

    def workers(self, runtime: str | None = None, status: str | None = None) -> list[JSON]:
        if runtime is None:
            body = self._client.request("GET", "/api/workers")
            for diagnostic in body.get("diagnostics", []):
                print(
                    f"yoi: {diagnostic.get('runtime_id')}: {diagnostic.get('message')}",
                    file=sys.stderr,
                )
            rows = list(body["workers"])
            return [w for w in rows if status is None or w.get("status") == status]
        return _paged(self._client, f"/api/runtimes/{_seg(runtime)}/workers", status)

    def profiles(self, runtime: str) -> list[JSON]:
        path = f"/api/runtimes/{_seg(runtime)}/profiles"
        return list(self._client.request("GET", path)["profiles"])

    def create_worker(self, runtime: str, body: JSON) -> JSON:
        path = f"/api/runtimes/{_seg(runtime)}/workers"
        return dict(self._client.request("POST", path, body)["worker"])


class RuntimeApi(Api):
    """One ``yoi-runtime`` process, spoken to directly (operators)."""

    kind = "runtime"

    def __init__(self, base_url: str, token: str | None) -> None:
        super().__init__(base_url, token)
        self._summary: JSON | None = None

    def summary(self) -> JSON:
        if self._summary is None:
            self._summary = dict(self._client.request("GET", "/v1/runtime")["runtime"])
        return self._summary

    def default_runtime(self) -> str:
        return str(self.summary()["runtime_id"])

    def _check(self, runtime: str | None) -> None:
        if runtime is not None and runtime != self.default_runtime():
            raise ApiError(
                "runtime_not_found",
                f"this Runtime is {self.default_runtime()!r}, not {runtime!r}",
            )

    def _w(self, ref: Ref, action: str = "") -> str:
        self._check(ref.runtime_id)
        path = f"/v1/workers/{_seg(ref.worker_id)}"
        return f"{path}/{action}" if action else path

    def runtimes(self) -> list[JSON]:
        s = self.summary()
        return [
            {
                "runtime_id": s["runtime_id"],
                "display_name": s.get("display_name"),
                "kind": "runtime",
                "status": s.get("status"),
                "counts": s.get("counts"),
                "store": s.get("store"),
                "diagnostics_count": s.get("diagnostics_count"),
            }
        ]

    def workers(self, runtime: str | None = None, status: str | None = None) -> list[JSON]:
        self._check(runtime)
        return _paged(self._client, "/v1/workers", status)

    def profiles(self, runtime: str) -> list[JSON]:
        self._check(runtime)
        return list(self._client.request("GET", "/v1/profiles")["profiles"])

    def create_worker(self, runtime: str, body: JSON) -> JSON:
        self._check(runtime)
        return dict(self._client.request("POST", "/v1/workers", body)["worker"])


def _paged(client: _Http, path: str, status: str | None) -> list[JSON]:
    rows: list[JSON] = []
    after = None
    while True:
        page = client.request("GET", path, status=status, limit=1000, after=after)
        rows.extend(page["workers"])
        after = page.get("next_after")
        if not after:
            return rows
