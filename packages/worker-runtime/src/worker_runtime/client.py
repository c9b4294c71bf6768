"""An async client for a ``yoi-runtime`` process (``event-stream`` extra: httpx + httpx-sse).

:class:`RuntimeClient` covers every REST command of contract §6 and the event stream of §7. Errors
come back as the same exception classes the library raises, chosen by the envelope's ``code``;
a Runtime that cannot be reached is :class:`~worker_runtime.RuntimeUnavailable` with
``details.reason`` ``unreachable`` or ``timeout``.

:meth:`RuntimeClient.stream_events` reconnects with the last cursor it saw, backing off between
attempts, and drops events it has already delivered, so a consumer sees each event once and in
order across reconnects. The token never appears in the client's repr or in its logs.
"""

from __future__ import annotations

import json
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, cast

try:
    import httpx
    from httpx_sse import SSEError, aconnect_sse
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    from .errors import MissingExtraError

    raise MissingExtraError("event-stream") from exc

import anyio

from ._clientevents import _ClientEvents
from ._clientwire import (
    _bad_reply,
    _error_of,
    _event_of,
    _json_of,
    _params,
    _parse,
    _unavailable,
    _worker_path,
)
from .api import EventStream, RuntimeAPI
from .errors import RuntimeUnavailable
from .events import Event, notice
from .models import (
    CancelAck,
    CreateWorkerRequest,
    Diagnostic,
    InputAck,
    InputRequest,
    ProfileEntry,
    RuntimeSummary,
    StopAck,
    TranscriptPage,
    WorkerDetail,
    WorkerPage,
)

__all__ = ["RuntimeClient"]

log = logging.getLogger("worker_runtime.client")

#: How many delivered cursors a stream remembers to drop repeats after a reconnect.
_SEEN_CURSORS = 4096
#: How many parsed request URLs a client keeps (paths differ by worker_id).
_URL_CACHE = 4096


class RuntimeClient:
    """A client for one Runtime at ``base_url``, authenticated with ``token``.

    Use it as ``async with RuntimeClient(url, token=…) as client``. ``timeout_s`` bounds each
    command; ``stream_idle_timeout_s`` is how long a stream may stay silent (no event, no
    heartbeat) before the client reconnects, so it must exceed the server's heartbeat interval.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout_s: float = 10.0,
        stream_idle_timeout_s: float = 45.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout_s)
        self._stream_timeout = httpx.Timeout(timeout_s, read=stream_idle_timeout_s)
        self._urls: dict[str, httpx.URL] = {}
        auth = {"authorization": f"Bearer {token}"}
        self._headers = httpx.Headers(auth)
        self._json_headers = httpx.Headers({**auth, "content-type": "application/json"})
        self._extensions = {"timeout": self._timeout.as_dict()}
        # Commands go to the transport directly (see _request); streams use the client. Both
        # share the transport, so they share its connection pool. Closing the client closes it.
        self._transport = transport or httpx.AsyncHTTPTransport()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=auth,
            timeout=self._timeout,
            transport=self._transport,
            trust_env=False,  # no proxy from the environment: a token goes to base_url only
        )

    def __repr__(self) -> str:
        return f"RuntimeClient(base_url={self.base_url!r}, token='***')"

    async def __aenter__(self) -> RuntimeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- commands ----------------------------------------------------------------------------

    async def health(self) -> bool:
        """Whether the Runtime answers its open ``/healthz`` route."""
        response = await self._request("GET", "/healthz")
        return bool(response.get("status") == "ok")

    async def summary(self) -> RuntimeSummary:
        return _parse(RuntimeSummary, await self._request("GET", "/v1/runtime"), "runtime")

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        params = _params(status=status, limit=limit, after=after)
        return _parse(WorkerPage, await self._request("GET", "/v1/workers", params=params))

    async def create_worker(self, request: CreateWorkerRequest | None = None) -> WorkerDetail:
        body = (request or CreateWorkerRequest()).model_dump(mode="json", exclude_none=True)
        response = await self._request("POST", "/v1/workers", payload=body)
        return _parse(WorkerDetail, response, "worker")

    async def get_worker(self, worker_id: str) -> WorkerDetail:
        response = await self._request("GET", _worker_path(worker_id))
        return _parse(WorkerDetail, response, "worker")

    async def send_input(self, worker_id: str, request: InputRequest) -> InputAck:
        body = request.model_dump(mode="json", exclude_none=True)
        response = await self._request("POST", _worker_path(worker_id, "input"), payload=body)
        return _parse(InputAck, response, "ack")

    async def stop_worker(self, worker_id: str, *, reason: str | None = None) -> StopAck:
        body = _params(reason=reason)
        response = await self._request("POST", _worker_path(worker_id, "stop"), payload=body)
        return _parse(StopAck, response, "ack")

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        body = _params(turn_id=turn_id, reason=reason)
        response = await self._request("POST", _worker_path(worker_id, "cancel"), payload=body)
        return _parse(CancelAck, response, "ack")

    async def read_transcript(
        self, worker_id: str, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        params = _params(start=start, limit=limit)
        path = _worker_path(worker_id, "transcript")
        response = await self._request("GET", path, params=params)
        return _parse(TranscriptPage, response, "transcript")

    async def list_profiles(self) -> list[ProfileEntry]:
        """The profiles a Worker may be created on (``GET /v1/profiles``)."""
        response = await self._request("GET", "/v1/profiles")
        return [_parse(ProfileEntry, item) for item in response["profiles"]]

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        response = await self._request("GET", "/v1/diagnostics", params=_params(limit=limit))
        items = response.get("diagnostics")
        if not isinstance(items, list):
            raise _bad_reply()
        return [_parse(Diagnostic, item) for item in items]

    # -- events ------------------------------------------------------------------------------

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        """:meth:`stream_events` as the :class:`~worker_runtime.api.EventStream` of
        :class:`~worker_runtime.api.RuntimeAPI`: entering it waits for the first connection,
        so what the Runtime refuses at once (``worker_not_found``, ``cursor_unknown``,
        ``cursor_expired`` …) raises there; while the Runtime cannot be reached it keeps
        trying, as the stream does."""
        return _ClientEvents(self._stream(cursor, worker_id, announce=True))

    def stream_events(
        self,
        *,
        cursor: str | None = None,
        worker_id: str | None = None,
        reconnect: bool = True,
        max_attempts: int | None = None,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        outage_notices: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """Events after ``cursor`` (new events only without one), runtime-wide or for one
        Worker, as :class:`~worker_runtime.Event` values.

        When the connection drops or the Runtime restarts, the stream reconnects from the last
        cursor it delivered, backing off from ``backoff_s`` to ``max_backoff_s`` (with jitter);
        ``max_attempts`` failed attempts in a row (``None``: no limit) raise the last error.
        Events already delivered are dropped. ``runtime_shutdown`` notices are delivered and
        the stream reconnects; a ``resync_required`` notice is delivered and the stream ends.
        Only ``runtime_unavailable`` is retried; every other error (``cursor_malformed``,
        ``cursor_unknown``, ``cursor_expired``, ``worker_not_found``, ``unauthorized`` …) is
        raised at once, since reconnecting cannot cure it.

        With ``outage_notices``, the first failed attempt of each outage is also delivered, as
        a ``diagnostic`` notice (no cursor) with ``code: runtime_unavailable`` and the reason.
        """
        stream = self._stream(
            cursor,
            worker_id,
            reconnect=reconnect,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            outage_notices=outage_notices,
        )
        return cast(AsyncGenerator[Event, None], stream)  # without announce: never None

    async def _stream(
        self,
        cursor: str | None,
        worker_id: str | None,
        *,
        announce: bool = False,
        reconnect: bool = True,
        max_attempts: int | None = None,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        outage_notices: bool = False,
    ) -> AsyncGenerator[Event | None, None]:
        """:meth:`stream_events`; with ``announce``, ``None`` once the first connection is
        open, before any event."""
        path = "/v1/events" if worker_id is None else _worker_path(worker_id, "events")
        seen: OrderedDict[str, None] = OrderedDict()
        failures = 0
        runtime_id = ""  # learnt from the events, for outage notices
        while True:
            try:
                async with aclosing(self._stream_once(path, cursor)) as events:
                    async for event in events:
                        failures = 0
                        if event is None:  # connected
                            if announce:
                                announce = False
                                yield None
                            continue
                        runtime_id = event.runtime_id
                        if event.cursor is not None:
                            if event.cursor in seen:
                                continue
                            seen[event.cursor] = None
                            if len(seen) > _SEEN_CURSORS:
                                seen.popitem(last=False)
                            cursor = event.cursor
                        yield event
                        if event.kind == "diagnostic" and event.data.get("code") == (
                            "resync_required"
                        ):
                            return
                error = RuntimeUnavailable(
                    "the event stream ended", details={"reason": "stream_ended"}
                )
            except RuntimeUnavailable as exc:  # unreachable, restarting, too many streams
                error = exc
            if not reconnect:
                raise error
            failures += 1
            if max_attempts is not None and failures >= max_attempts:
                raise error
            if outage_notices and failures == 1:
                yield notice(
                    runtime_id,
                    worker_id,
                    "runtime_unavailable",
                    "the runtime is unavailable; the stream resumes when it is back",
                    reason=str(error.details.get("reason", "unreachable")),
                )
            delay = min(max_backoff_s, backoff_s * 2 ** (failures - 1))
            log.info("event stream lost (%s); reconnecting in %.2f s", error.code, delay)
            await anyio.sleep(delay * (0.5 + random.random() / 2))

    async def _stream_once(
        self, path: str, cursor: str | None
    ) -> AsyncGenerator[Event | None, None]:
        """One connection: ``None`` once it is open, then its events."""
        params = _params(cursor=cursor)
        try:
            async with aconnect_sse(
                self._http, "GET", path, params=params, timeout=self._stream_timeout
            ) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    raise _error_of(response)
                yield None
                async for message in source.aiter_sse():
                    if not message.data:
                        continue
                    yield _event_of(message.data)
        except httpx.TimeoutException:
            raise _unavailable("timeout") from None
        except (httpx.TransportError, SSEError):
            raise _unavailable("unreachable") from None

    # -- plumbing ----------------------------------------------------------------------------

    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of ``path``, parsed once: a relative path costs httpx two URL
        parses per request, a third of a small command's client time."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + path)
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            self._urls[path] = url
        return url

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> dict[str, Any]:
        """One command. It is sent through the transport directly: httpx's client adds
        redirects, cookies, auth flows and hooks, none of which a Runtime call uses, at a cost
        of a few hundred microseconds per request."""
        url = self._url(path)
        if params:
            url = url.copy_merge_params(params)
        if payload is None:
            request = httpx.Request(method, url, headers=self._headers, extensions=self._extensions)
        else:
            content = json.dumps(payload, separators=(",", ":")).encode()
            request = httpx.Request(
                method,
                url,
                content=content,
                headers=self._json_headers,
                extensions=self._extensions,
            )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise _unavailable("timeout") from None
        except httpx.TransportError:
            raise _unavailable("unreachable") from None
        if response.status_code >= 400:
            raise _error_of(response)
        body = _json_of(response)
        if not isinstance(body, dict):
            raise _bad_reply()
        return body


def _conforms(client: RuntimeClient) -> RuntimeAPI:
    """mypy checks here that :class:`RuntimeClient` implements ``RuntimeAPI``."""
    return client
