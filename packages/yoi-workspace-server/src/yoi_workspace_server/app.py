"""The browser-facing API of the Workspace Backend (SPEC §10), all under ``/api``.

Routes are runtime-scoped (``/api/runtimes/{runtime_id}/workers/{worker_id}/…``): the pair
runtime_id + worker_id is the authority, so two runtimes may hold the same worker_id. One
aggregate list, ``GET /api/workers``, shows every Worker of every source with its runtime_id.

Cursors the browser sees are the Backend's own: each wraps the runtime it belongs to and that
runtime's cursor, so a browser resumes through the Backend across the Backend's reconnects to
a remote runtime. Nothing here ever returns a store path, a runtime URL or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sqlite3
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from worker_runtime import (
    CreateWorkerRequest,
    CursorMalformed,
    CursorUnknown,
    Event,
    InputRequest,
    InvalidInput,
    RuntimeUnavailable,
    WorkerRuntimeError,
)
from worker_runtime.events import notice
from worker_runtime.http import DirectRoute, install_error_handlers, validate_body
from worker_runtime.http.stream import SseResponse, encode_event
from worker_runtime.models import require_id

from . import __version__
from ._console import ConsoleFiles
from ._openapi import body, describe
from ._stream import MAX_CURSOR_CHARS, CompositeCursor, merged_messages, open_sources, utf8
from .registry import RemoteRecord, RuntimeRegistry
from .session_api import install_session_routes
from .sessions import FailedLogins, Sessions
from .sources import RemoteSource, Source
from .trust import TrustBoundary, TrustSettings

__all__ = ["BackendSettings", "create_backend_app"]

log = logging.getLogger("yoi_workspace_server.app")

_CURSOR_PREFIX = "b1."


@dataclass(frozen=True)
class BackendSettings:
    """``token``: the browser token (always required; see :mod:`.trust`). ``bound_host``,
    ``allowed_hosts`` and ``public_url`` make the Host allow-list and the Backend's own
    origin; sessions end ``session_idle_s`` after their last use and ``session_max_s`` after
    sign-in. More than ``failed_login_budget`` failed sign-ins or bad tokens from one client
    in a minute are answered ``429 too_many_requests``. ``max_streams``: open browser event
    streams over every source (503 ``runtime_unavailable`` with ``reason: too_many_streams``
    above it; each remote has its own cap too, see
    :class:`~yoi_workspace_server.registry.RemoteLimits`)."""

    token: str
    max_body_bytes: int = 1024 * 1024
    heartbeat_s: float = 15.0
    max_streams: int = 1024
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    public_url: str | None = None
    session_idle_s: float = 12 * 3600.0
    session_max_s: float = 7 * 86400.0
    failed_login_budget: int = 10

    def __repr__(self) -> str:
        return (
            f"BackendSettings(token='***', max_body_bytes={self.max_body_bytes}, "
            f"heartbeat_s={self.heartbeat_s}, max_streams={self.max_streams}, "
            f"bound_host={self.bound_host!r}, allowed_hosts={self.allowed_hosts!r}, "
            f"public_url={self.public_url!r})"
        )


#: Bidirectional formatting characters (Trojan Source): they reorder how text is shown.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(value: str) -> str:
    """Refuse control characters (C0, DEL, C1), line separators and bidi overrides."""
    for ch in value:
        if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise ValueError("must not contain control or bidirectional formatting characters")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterRuntime(_Body):
    runtime_id: Annotated[str, Field(min_length=1, max_length=120)]
    display_name: (
        Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)] | None
    ) = None
    base_url: Annotated[str, Field(min_length=1, max_length=2000)]
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


class StopBody(_Body):
    reason: Annotated[str, Field(max_length=1000)] | None = None


class CancelBody(_Body):
    turn_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None


# -- Backend cursors -------------------------------------------------------------------------


def wrap_cursor(runtime_id: str, cursor: str) -> str:
    raw = f"{runtime_id}\n{cursor}".encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unwrap_cursor(runtime_id: str, cursor: str) -> str:
    """The runtime cursor inside a Backend cursor of ``runtime_id``."""
    if not cursor.startswith(_CURSOR_PREFIX) or len(cursor) > 400:
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]})
    body = cursor[len(_CURSOR_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]}) from None
    owner, sep, inner = raw.partition("\n")
    if not sep or not inner:
        raise CursorMalformed("not a cursor", details={"cursor": cursor[:200]})
    if owner != runtime_id:
        raise CursorUnknown("the cursor belongs to another runtime", details={"cursor": cursor})
    return inner


_CURSOR_KEYS = frozenset({"cursor", "last_cursor", "oldest_cursor"})


def _wrap_cursors(runtime_id: str, value: Any) -> Any:
    """``value`` with every runtime cursor in it replaced by a Backend cursor."""
    if isinstance(value, dict):
        return {
            k: wrap_cursor(runtime_id, v)
            if k in _CURSOR_KEYS and isinstance(v, str)
            else _wrap_cursors(runtime_id, v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_wrap_cursors(runtime_id, v) for v in value]
    return value


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(
        utf8(json.dumps(body, ensure_ascii=False, separators=(",", ":"))),
        status_code,
        media_type="application/json",
    )


def _header_text(value: str | None) -> str | None:
    """A header as the client sent it: Starlette decodes headers as Latin-1, browsers send
    UTF-8."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


def create_backend_app(
    registry: RuntimeRegistry, settings: BackendSettings, sessions: Sessions | None = None
) -> Any:
    """The Backend's ASGI app over ``registry``, behind the browser trust boundary
    (:class:`~.trust.TrustBoundary`). ``sessions``: the session table (the control plane's
    in ``yoi-workspace-server``; an in-memory database when ``None``)."""
    if sessions is None:
        sessions = Sessions(
            sqlite3.connect(":memory:", check_same_thread=False),
            idle_s=settings.session_idle_s,
            max_s=settings.session_max_s,
        )
    trust = TrustSettings(
        token=settings.token,
        bound_host=settings.bound_host,
        allowed_hosts=settings.allowed_hosts,
        public_url=settings.public_url,
        max_body_bytes=settings.max_body_bytes,
    )
    app = FastAPI(
        title="yoi Workspace Backend",
        version=__version__,
        description="The browser-facing API over every registered Runtime.",
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = DirectRoute
    # No slash redirects: their Location is built from the client's Host header.
    app.router.redirect_slashes = False
    install_error_handlers(app)
    describe(app, (InputRequest, RegisterRuntime, CreateWorkerRequest, StopBody, CancelBody))
    streams = _StreamSlots(settings.max_streams)
    deadline_s = registry.limits.reply.deadline_s
    boundary = TrustBoundary(
        ConsoleFiles(app), trust, sessions, FailedLogins(budget=settings.failed_login_budget)
    )
    install_session_routes(app, boundary)

    def source(runtime_id: str) -> Source:
        return registry.get(require_id(runtime_id, "runtime_id"))

    def worker_id_of(worker_id: str) -> str:
        return require_id(worker_id, "worker_id")

    def runtime_json(runtime_id: str, body: Any, status_code: int = 200) -> Response:
        return _json(_wrap_cursors(runtime_id, body), status_code)

    # The hot route first: Starlette matches routes in order.
    @app.post(
        "/api/runtimes/{runtime_id}/workers/{worker_id}/input", openapi_extra=body(InputRequest)
    )
    async def send_input(runtime_id: str, worker_id: str, request: Request) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        body = validate_body(InputRequest, await request.body())
        return runtime_json(runtime_id, {"ack": _dump(await s.send_input(wid, body))})

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/api/runtimes")
    async def list_runtimes() -> Response:
        return _json({"runtimes": [_dump(await s.info()) for s in registry.sources()]})

    @app.post("/api/runtimes", status_code=201, openapi_extra=body(RegisterRuntime))
    async def register_runtime(request: Request) -> Response:
        body: RegisterRuntime = validate_body(RegisterRuntime, await request.body())
        record = RemoteRecord(
            runtime_id=body.runtime_id,
            display_name=body.display_name or body.runtime_id,
            base_url=body.base_url,
            token=body.token or "",
        )
        remote = await registry.add_remote(record, persist=True)
        return _json({"runtime": _dump(await remote.info())}, 201)

    @app.get("/api/runtimes/{runtime_id}")
    async def get_runtime(runtime_id: str) -> Response:
        return _json({"runtime": _dump(await source(runtime_id).info())})

    @app.delete("/api/runtimes/{runtime_id}")
    async def remove_runtime(runtime_id: str) -> Response:
        await registry.remove(require_id(runtime_id, "runtime_id"))
        return _json({"removed": runtime_id})

    @app.get("/api/workers")
    async def all_workers(limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> Response:
        """Every Worker of every available source (up to ``limit`` per source), each row
        with its runtime_id; an unavailable source is listed in ``diagnostics`` instead."""
        sources = registry.sources()
        results: list[list[Any] | dict[str, Any]] = [
            _unavailable_row(s.runtime_id, "timeout") for s in sources
        ]

        async def ask(i: int, s: Source) -> None:
            # All sources at once, each within its own deadline: a slow one delays nobody.
            if isinstance(s, RemoteSource) and s.status == "unavailable":
                results[i] = _unavailable_row(s.runtime_id, s.reason or "unreachable")
                return
            with anyio.move_on_after(deadline_s):
                try:
                    page = await s.list_workers(status=None, limit=limit, after=None)
                except RuntimeUnavailable as exc:
                    reason = exc.details.get("reason")
                    results[i] = _unavailable_row(
                        s.runtime_id, reason if isinstance(reason, str) else "unreachable"
                    )
                    return
                results[i] = [_wrap_cursors(s.runtime_id, _dump(w)) for w in page.workers]

        async with anyio.create_task_group() as tg:
            for i, s in enumerate(sources):
                tg.start_soon(ask, i, s)
        rows: list[Any] = []
        diagnostics: list[Any] = []
        for result in results:
            if isinstance(result, list):
                rows.extend(result)
            else:
                diagnostics.append(result)
        return _json({"workers": rows, "diagnostics": diagnostics})

    @app.get("/api/runtimes/{runtime_id}/profiles")
    async def list_profiles(runtime_id: str) -> Response:
        """The profiles a Worker of this runtime may be created on; never a credential."""
        profiles = await source(runtime_id).list_profiles()
        return _json({"profiles": [_dump(p) for p in profiles]})

    @app.get("/api/runtimes/{runtime_id}/diagnostics")
    async def runtime_diagnostics(
        runtime_id: str, limit: Annotated[int | None, Query(ge=1)] = None
    ) -> Response:
        """The Runtime's own newest diagnostics, oldest first, each with its ``worker_id``
        (``None``: the runtime's); ``limit`` is capped by the Runtime's ``max_diagnostics``."""
        diagnostics = await source(runtime_id).diagnostics(limit=limit)
        return _json({"diagnostics": [_dump(d) for d in diagnostics]})

    @app.get("/api/events")
    async def all_events(
        runtime_id: Annotated[str | None, Query(max_length=120)] = None,
        worker_id: Annotated[str | None, Query(max_length=120)] = None,
        kinds: Annotated[str | None, Query(max_length=1000)] = None,
        cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=MAX_CURSOR_CHARS)
        ] = None,
    ) -> SseResponse:
        """One stream over every source (or one runtime, or one Worker of it), resumable
        from its composite cursor; see :mod:`._stream`."""
        rid = require_id(runtime_id, "runtime_id") if runtime_id is not None else None
        wid = worker_id_of(worker_id) if worker_id is not None else None
        if wid is not None and rid is None:
            raise InvalidInput(
                "worker_id needs runtime_id: a worker_id is unique within its runtime only",
                details={"field": "worker_id"},
            )
        wanted = _header_text(last_event_id) or cursor
        start = CompositeCursor.decode(wanted) if wanted else CompositeCursor()
        wanted_kinds = _parse_kinds(kinds)
        opened = await open_sources(registry, rid, wid, start)
        remotes = [s for s in (registry.get(r) for r, _ in opened) if isinstance(s, RemoteSource)]
        try:
            streams.acquire(*remotes)
        except BaseException:
            for _, events in opened:
                await events.aclose()
            raise
        messages = merged_messages(registry, opened, wid, wanted_kinds, start)

        async def close() -> None:
            try:
                await messages.aclose()
            finally:
                streams.release(*remotes)

        return SseResponse(messages, heartbeat_s=settings.heartbeat_s, on_close=close)

    @app.get("/api/runtimes/{runtime_id}/workers")
    async def list_workers(
        runtime_id: str,
        status: Annotated[Literal["idle", "running", "stopped"] | None, Query()] = None,
        limit: Annotated[int | None, Query(ge=1)] = None,
        after: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        page = await source(runtime_id).list_workers(status=status, limit=limit, after=after)
        return runtime_json(runtime_id, _dump(page))

    @app.post(
        "/api/runtimes/{runtime_id}/workers",
        status_code=201,
        openapi_extra=body(CreateWorkerRequest, required=False),
    )
    async def create_worker(runtime_id: str, request: Request) -> Response:
        s = source(runtime_id)
        body = validate_body(CreateWorkerRequest, await request.body(), optional=True)
        return runtime_json(runtime_id, {"worker": _dump(await s.create_worker(body))}, 201)

    @app.get("/api/runtimes/{runtime_id}/workers/{worker_id}")
    async def get_worker(runtime_id: str, worker_id: str) -> Response:
        s = source(runtime_id)
        return runtime_json(
            runtime_id, {"worker": _dump(await s.get_worker(worker_id_of(worker_id)))}
        )

    @app.post(
        "/api/runtimes/{runtime_id}/workers/{worker_id}/stop",
        openapi_extra=body(StopBody, required=False),
    )
    async def stop_worker(runtime_id: str, worker_id: str, request: Request) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        body: StopBody = validate_body(StopBody, await request.body(), optional=True)
        return runtime_json(runtime_id, {"ack": _dump(await s.stop_worker(wid, body.reason))})

    @app.post(
        "/api/runtimes/{runtime_id}/workers/{worker_id}/cancel",
        openapi_extra=body(CancelBody, required=False),
    )
    async def cancel(runtime_id: str, worker_id: str, request: Request) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        body: CancelBody = validate_body(CancelBody, await request.body(), optional=True)
        ack = await s.cancel(wid, body.turn_id, body.reason)
        return runtime_json(runtime_id, {"ack": _dump(ack)})

    @app.get("/api/runtimes/{runtime_id}/workers/{worker_id}/transcript")
    async def read_transcript(
        runtime_id: str,
        worker_id: str,
        start: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1)] = None,
    ) -> Response:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        page = await s.read_transcript(wid, start, limit)
        return runtime_json(runtime_id, {"transcript": _dump(page)})

    @app.get("/api/runtimes/{runtime_id}/workers/{worker_id}/events")
    async def worker_events(
        runtime_id: str,
        worker_id: str,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=400)] = None,
    ) -> SseResponse:
        s, wid = source(runtime_id), worker_id_of(worker_id)
        wanted = _header_text(last_event_id) or cursor
        inner = unwrap_cursor(runtime_id, wanted) if wanted else None
        remotes = (s,) if isinstance(s, RemoteSource) else ()
        streams.acquire(*remotes)
        try:
            events = await s.open_events(wid, inner)  # errors here are plain HTTP errors
        except BaseException:
            streams.release(*remotes)
            raise

        async def close() -> None:
            try:
                await events.aclose()
            finally:
                streams.release(*remotes)

        return SseResponse(
            _messages(runtime_id, wid, events), heartbeat_s=settings.heartbeat_s, on_close=close
        )

    return boundary


_KIND = re.compile(r"^[a-z_]{1,40}$")


def _parse_kinds(kinds: str | None) -> frozenset[str] | None:
    """``kinds=a,b``: the event kinds wanted (stream notices always pass)."""
    if kinds is None:
        return None
    names = frozenset(k.strip() for k in kinds.split(",") if k.strip())
    if not names or len(names) > 32 or not all(_KIND.match(k) for k in names):
        raise InvalidInput(
            "kinds must be a comma-separated list of event kinds", details={"field": "kinds"}
        )
    return names


def _replace_surrogates(event: Event) -> Event:
    """``event`` with every lone surrogate in its text replaced by U+FFFD."""
    clean = json.loads(utf8(json.dumps(event.to_dict(), ensure_ascii=False)))
    return replace(
        event,
        kind=clean["kind"],
        worker_id=clean["worker_id"],
        turn_id=clean["turn_id"],
        at=clean["at"],
        data=clean["data"],
    )


class _StreamSlots:
    """Open browser streams, counted against the Backend's cap and each remote's."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0

    def acquire(self, *remotes: RemoteSource) -> None:
        """One browser stream, fed by ``remotes`` (none for a stream of embedded sources)."""
        if self.open >= self.cap:
            raise _too_many_streams(self.cap)
        for remote in remotes:
            if remote.open_streams >= remote.max_streams:
                raise _too_many_streams(remote.max_streams, per_runtime=True)
        for remote in remotes:
            remote.open_streams += 1
        self.open += 1

    def release(self, *remotes: RemoteSource) -> None:
        self.open -= 1
        for remote in remotes:
            remote.open_streams -= 1


def _too_many_streams(cap: int, per_runtime: bool = False) -> RuntimeUnavailable:
    where = "to this runtime" if per_runtime else "on this Backend"
    return RuntimeUnavailable(
        f"too many open event streams {where}; retry later",
        details={"reason": "too_many_streams", "max_streams": cap},
    )


def _unavailable_row(runtime_id: str, reason: str) -> dict[str, Any]:
    return {
        "runtime_id": runtime_id,
        "severity": "error",
        "code": "runtime_unavailable",
        "reason": reason,
        "message": "this runtime is unavailable; its Workers are not listed",
    }


async def _messages(
    runtime_id: str, worker_id: str, events: AsyncIterator[Event]
) -> AsyncIterator[bytes]:
    """The source's events, encoded with Backend cursors."""
    try:
        async for event in events:
            cursor = None if event.cursor is None else wrap_cursor(runtime_id, event.cursor)
            try:
                yield encode_event(event, cursor)
            except UnicodeEncodeError:  # a lone surrogate from a remote: U+FFFD instead
                yield encode_event(_replace_surrogates(event), cursor)
    except WorkerRuntimeError as exc:
        # A remote refused the stream once it started (e.g. cursor_expired): say so, then end.
        log.info("stream of runtime %s ended: %s", runtime_id, exc.code)
        yield encode_event(notice(runtime_id, worker_id, exc.code, exc.message))
