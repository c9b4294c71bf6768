"""The CLI's client layer: the one Runtime API's verbs over HTTP, and one small interface,
:class:`Api`, over the two servers ``yoi`` can speak to, so every command is written once.

- :class:`HttpRuntime` is one runtime's verbs with the names and call shapes of
  ``worker_runtime.api.RuntimeAPI`` (``worker_id`` positional, options keyword-only, typed
  errors), blocking and in JSON. :class:`BackendRuntime` is a runtime behind a Backend.
- :class:`BackendApi` speaks to a Workspace Backend (``yoi up``): ``/api/...`` routes, every
  runtime it serves, Backend cursors. :class:`RuntimeApi` speaks to one ``yoi-runtime``
  directly: ``/v1/...`` routes, one runtime. ``api.runtime(runtime_id)`` gives a runtime's
  verbs; :meth:`Api.follow` follows a Worker's stream across drops and restarts.

Everything runs over :class:`_Http`, a blocking HTTP/1.1 client on the standard library's
``http.client``: a command-line call makes a handful of requests, and importing httpx and
pydantic (``worker_runtime.client.RuntimeClient``) would cost more than the whole budget of
``yoi workers`` (300 ms). Values stay the JSON the API gave (dicts), so ``--json`` prints them
as they came.

Errors are :class:`ApiError` with the API's stable ``code`` (the codes of
``worker_runtime.errors``); a server that does not answer is ``code == "unreachable"``, the
client's one code of its own.
"""

from __future__ import annotations

import random
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from ._http import JSON, ApiError, EventStream, _Http

__all__ = [
    "Api",
    "ApiError",
    "BackendApi",
    "BackendRuntime",
    "EventStream",
    "HttpRuntime",
    "Ref",
    "RuntimeApi",
    "StreamState",
]

_SEEN = 8192


@dataclass(frozen=True)
class Ref:
    """A Worker's authority: its runtime and its id."""

    runtime_id: str
    worker_id: str

    def __str__(self) -> str:
        return f"{self.runtime_id}/{self.worker_id}"


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass
class StreamState:
    """Where a followed stream is: the last cursor delivered, for a resume."""

    cursor: str | None
    reconnects: int = 0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)


class HttpRuntime:
    """One runtime's verbs, spoken over HTTP: the names and call shapes of the one Runtime API
    (``worker_runtime.api.RuntimeAPI``): a Worker is its ``worker_id: str`` (positional),
    every option is keyword-only, a failure is an :class:`ApiError` with the API's code.

    It is that protocol's blocking twin: values are the JSON the API gave (dicts), and each
    verb makes one request. ``base`` is where the runtime's routes live: ``/v1`` on a
    ``yoi-runtime``; a Backend's runtime is :class:`BackendRuntime`. A test checks the verbs
    against ``RuntimeAPI`` (``tests/test_client_api.py``): importing that protocol here would
    pull pydantic into every ``yoi`` command.
    """

    def __init__(self, client: _Http, base: str = "/v1") -> None:
        self._client = client
        self._base = base

    def _w(self, worker_id: str, action: str = "") -> str:
        path = f"{self._base}/workers/{_seg(worker_id)}"
        return f"{path}/{action}" if action else path

    # -- management ------------------------------------------------------------------------

    def summary(self) -> JSON:
        """The runtime's identity, status, limits and counts."""
        return dict(self._client.request("GET", f"{self._base}/runtime")["runtime"])

    def diagnostics(self, *, limit: int | None = None) -> list[JSON]:
        """The newest diagnostics, oldest first."""
        path = f"{self._base}/diagnostics"
        return list(self._client.request("GET", path, limit=limit)["diagnostics"])

    def list_profiles(self) -> list[JSON]:
        """The profiles a Worker may be created on."""
        return list(self._client.request("GET", f"{self._base}/profiles")["profiles"])

    # -- catalog and lifecycle -------------------------------------------------------------

    def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> JSON:
        """A page of Workers in creation order (``workers``, ``next_after``)."""
        path = f"{self._base}/workers"
        return self._client.request("GET", path, status=status, limit=limit, after=after)

    def create_worker(self, request: JSON | None = None) -> JSON:
        """Create a Worker; its detail."""
        path = f"{self._base}/workers"
        return dict(self._client.request("POST", path, request or {})["worker"])

    def get_worker(self, worker_id: str, /) -> JSON:
        """A Worker's detail."""
        return dict(self._client.request("GET", self._w(worker_id))["worker"])

    def stop_worker(self, worker_id: str, /, *, reason: str | None = None) -> JSON:
        """Stop a Worker for good; the stop acknowledgement."""
        body = {"reason": reason} if reason else {}
        return dict(self._client.request("POST", self._w(worker_id, "stop"), body)["ack"])

    def cancel(
        self, worker_id: str, /, *, turn_id: str | None = None, reason: str | None = None
    ) -> JSON:
        """Abort the turn in flight, if any; the cancel acknowledgement."""
        body = {k: v for k, v in (("turn_id", turn_id), ("reason", reason)) if v}
        return dict(self._client.request("POST", self._w(worker_id, "cancel"), body)["ack"])

    # -- interaction -----------------------------------------------------------------------

    def send_input(self, worker_id: str, request: JSON, /) -> JSON:
        """Give a Worker input; the input acknowledgement."""
        return dict(self._client.request("POST", self._w(worker_id, "input"), request)["ack"])

    # -- observation -----------------------------------------------------------------------

    def read_transcript(
        self, worker_id: str, /, *, start: int = 0, limit: int | None = None
    ) -> JSON:
        """A bounded page of the transcript."""
        path = self._w(worker_id, "transcript")
        return dict(self._client.request("GET", path, start=start, limit=limit)["transcript"])

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        """The events after ``cursor``, runtime-wide or for one Worker (one connection: see
        :meth:`Api.follow` for a stream that survives drops)."""
        path = f"{self._base}/events" if worker_id is None else self._w(worker_id, "events")
        return EventStream(self._client, path, cursor)


class BackendRuntime(HttpRuntime):
    """One runtime as a Workspace Backend serves it (``/api/runtimes/{runtime_id}/…``).

    The Backend has no route for one runtime's diagnostics list or its runtime-wide stream:
    the diagnostics come from the runtime's row, and a runtime-wide stream is
    ``unsupported_operation`` (the Backend's ``/api/events`` spans every runtime).
    """

    def __init__(self, client: _Http, runtime_id: str) -> None:
        super().__init__(client, f"/api/runtimes/{_seg(runtime_id)}")

    def summary(self) -> JSON:
        return dict(self._client.request("GET", self._base)["runtime"])

    def diagnostics(self, *, limit: int | None = None) -> list[JSON]:
        rows = list(self.summary().get("diagnostics") or [])
        return rows[-limit:] if limit else rows

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        if worker_id is None:
            raise ApiError(
                "unsupported_operation", "a Backend streams one runtime's events per Worker"
            )
        return super().events(cursor=cursor, worker_id=worker_id)


class Api:
    """What every command needs from a Backend or a Runtime: the runtimes, each one's verbs
    (:meth:`runtime`), Workers across runtimes, and a followed event stream."""

    kind = ""

    def __init__(self, base_url: str, token: str | None) -> None:
        self._client = _Http(base_url, token)
        self.base_url = self._client.base_url

    def default_runtime(self) -> str:
        """The runtime commands go to when none is named."""
        raise NotImplementedError

    def runtime(self, runtime_id: str) -> HttpRuntime:
        """The verbs of the runtime ``runtime_id``."""
        raise NotImplementedError

    def runtimes(self) -> list[JSON]:
        raise NotImplementedError

    def add_runtime(self, runtime_id: str, url: str, token: str, name: str | None) -> JSON:
        raise ApiError("unsupported_operation", "only a Backend manages runtimes")

    def remove_runtime(self, runtime_id: str) -> None:
        raise ApiError("unsupported_operation", "only a Backend manages runtimes")

    def workers(self, runtime: str | None = None, status: str | None = None) -> list[JSON]:
        """Every Worker of one runtime (all pages), or of every runtime."""
        runtime = runtime or self.default_runtime()
        rows: list[JSON] = []
        after = None
        while True:
            page = self.runtime(runtime).list_workers(status=status, limit=1000, after=after)
            rows.extend(page["workers"])
            after = page.get("next_after")
            if not after:
                return rows

    def close(self) -> None:
        self._client.close()

    def health(self) -> None:
        """Raise ``unreachable`` unless the server answers its open ``/healthz``."""
        self._client.request("GET", "/healthz")

    def follow(
        self, ref: Ref, state: StreamState, *, follow_outages: bool = True
    ) -> Iterator[tuple[str, JSON]]:
        """The Worker's events after ``state.cursor`` as ``(kind, event)``, following the
        stream: on a drop, a timeout or a server restart it reconnects from the last cursor it
        delivered (backing off up to 2 s), and drops what it already delivered, so each event
        arrives once and in order. Notices (no cursor) come through too. A typed error that a
        reconnect cannot cure (not found, unauthorized, a bad cursor) is raised;
        ``follow_outages=False`` raises ``unreachable`` instead of retrying."""
        failures = 0
        runtime = self.runtime(ref.runtime_id)
        while True:
            try:
                with runtime.events(cursor=state.cursor, worker_id=ref.worker_id) as stream:
                    failures = 0
                    for event in stream:
                        kind = str(event.get("kind"))
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

    def runtime(self, runtime_id: str) -> HttpRuntime:
        return BackendRuntime(self._client, runtime_id)

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
        if runtime is not None:
            return super().workers(runtime, status)
        body = self._client.request("GET", "/api/workers")
        for diagnostic in body.get("diagnostics", []):
            print(
                f"yoi: {diagnostic.get('runtime_id')}: {diagnostic.get('message')}",
                file=sys.stderr,
            )
        rows = list(body["workers"])
        return [w for w in rows if status is None or w.get("status") == status]


class RuntimeApi(Api):
    """One ``yoi-runtime`` process, spoken to directly (operators)."""

    kind = "runtime"

    def __init__(self, base_url: str, token: str | None) -> None:
        super().__init__(base_url, token)
        self._runtime = HttpRuntime(self._client)
        self._summary: JSON | None = None

    def summary(self) -> JSON:
        if self._summary is None:
            self._summary = self._runtime.summary()
        return self._summary

    def default_runtime(self) -> str:
        return str(self.summary()["runtime_id"])

    def runtime(self, runtime_id: str) -> HttpRuntime:
        if runtime_id != self.default_runtime():
            raise ApiError(
                "runtime_not_found",
                f"this Runtime is {self.default_runtime()!r}, not {runtime_id!r}",
            )
        return self._runtime

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
