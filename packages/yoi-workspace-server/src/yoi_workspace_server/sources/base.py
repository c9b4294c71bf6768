"""What every Backend source is: a :class:`~worker_runtime.RuntimeAPI` (its ``api``), its
``info()`` and its capabilities.

The routes call ``source.api`` for every verb; what differs between sources is said by data,
never by the source's class:

- :class:`Capabilities` (on the wire, in ``GET /api/runtimes``): which verbs it performs;
- ``live``: a live source (embedded, remote) wins over a projection of a store (``False``)
  with the same runtime_id;
- ``removable``: ``DELETE /api/runtimes/{runtime_id}`` removes it;
- ``stream_cap``: its own cap on open browser streams (``None``: only the Backend's);
- :meth:`Source.unavailable_reason`: known to be unavailable without asking it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from pydantic import BaseModel

from worker_runtime import Event, EventStream, RuntimeAPI
from worker_runtime.models import RuntimeCounts

__all__ = [
    "ALL_CAPABILITIES",
    "READ_ONLY",
    "Capabilities",
    "RuntimeInfo",
    "Source",
    "SourceDiagnostic",
    "SourceEvents",
    "SourceKind",
    "SourceStatus",
]

SourceKind = Literal["embedded", "remote", "local_compatibility"]
SourceStatus = Literal["running", "stopped", "unavailable"]


class Capabilities(BaseModel):
    can_create: bool
    can_input: bool
    can_stop: bool
    can_cancel: bool
    can_read_transcript: bool
    can_stream_events: bool


ALL_CAPABILITIES = Capabilities(
    can_create=True,
    can_input=True,
    can_stop=True,
    can_cancel=True,
    can_read_transcript=True,
    can_stream_events=True,
)

READ_ONLY = Capabilities(
    can_create=False,
    can_input=False,
    can_stop=False,
    can_cancel=False,
    can_read_transcript=True,
    can_stream_events=False,
)


class SourceDiagnostic(BaseModel):
    """A diagnostic of a source. ``code`` is prefixed by the source's kind (``embedded.``,
    ``remote.``, ``local.``) so that diagnostics of different sources never look alike."""

    severity: Literal["info", "warning", "error"]
    code: str
    message: str
    at: str


class RuntimeInfo(BaseModel):
    """What every source reports (contract §10), with its summary: the Worker counts (as of the
    last successful health check for a remote; ``None`` before one)."""

    runtime_id: str
    display_name: str
    kind: SourceKind
    implementation: str
    status: SourceStatus
    capabilities: Capabilities
    diagnostics: list[SourceDiagnostic]
    counts: RuntimeCounts | None


class SourceEvents(Protocol):
    """A source's open event stream: iterate it, then close it (always)."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...


class Source:
    """One Runtime as the registry sees it. Subclasses set ``api`` and ``capabilities`` and
    say what differs in the flags below; the defaults fit a live source that is never
    removed and whose streams only the Backend's cap counts."""

    kind: SourceKind
    live: bool = True
    removable: bool = False
    stream_cap: int | None = None

    def __init__(
        self, runtime_id: str, display_name: str, api: RuntimeAPI, capabilities: Capabilities
    ) -> None:
        self.runtime_id = runtime_id
        self.display_name = display_name
        self.api = api
        self.capabilities = capabilities
        self.open_streams = 0  # counted against stream_cap

    def __repr__(self) -> str:
        return f"{type(self).__name__}(runtime_id={self.runtime_id!r})"

    async def info(self) -> RuntimeInfo:
        raise NotImplementedError

    def unavailable_reason(self) -> str | None:
        """Why the source is known to be unavailable without asking it (``None``: ask it)."""
        return None

    async def open_events(self, worker_id: str | None, cursor: str | None) -> SourceEvents:
        """A Worker's events (every Worker's with ``worker_id`` ``None``) after ``cursor`` (a
        cursor of this Runtime). What can be checked before the stream starts raises here."""
        stream = self.api.events(cursor=cursor, worker_id=worker_id)
        return _Entered(await stream.__aenter__())

    def end_streams(self, message: str = "the Backend is shutting down") -> None:
        """End this source's open streams with a ``runtime_shutdown`` notice (a Runtime in
        the Backend's process ends its own when it closes)."""

    async def aclose(self) -> None:
        """Free what the source holds (connections)."""


class _Entered:
    """An entered :class:`~worker_runtime.EventStream` as :class:`SourceEvents`: closing it
    leaves the stream, started or not."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._stream

    async def aclose(self) -> None:
        await self._stream.__aexit__(None, None, None)
