"""The one Runtime API: the verbs every view of a Runtime speaks.

``Runtime`` (in process), ``worker_runtime.client.RuntimeClient`` (over HTTP) and the
read-only view of an fs-store root implement :class:`RuntimeAPI`; a Workspace Backend source
is this protocol plus its ``info()`` and capabilities. The rules every implementation keeps:

- every method is async, except :meth:`RuntimeAPI.events`, which returns an
  :class:`EventStream` to enter;
- a Worker is named by its ``worker_id: str`` (positional); every option is keyword-only;
- errors are the library's typed errors (``worker_runtime.errors``), whatever the transport;
- an implementation that cannot perform a verb (a read-only view cannot create a Worker)
  raises ``UnsupportedOperation``, never a stub result.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from .events import Event
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

__all__ = ["EventStream", "RuntimeAPI"]


class EventStream(Protocol):
    """Events after a cursor, as an async context manager and an async iterator.

    Entering it checks what can be checked before any event (the Worker, the cursor) and
    raises those errors; leaving it frees the stream at once::

        async with api.events(cursor=cursor, worker_id=worker_id) as stream:
            async for event in stream:
                ...
    """

    async def __aenter__(self) -> EventStream: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    def __aiter__(self) -> EventStream: ...

    async def __anext__(self) -> Event: ...


class RuntimeAPI(Protocol):
    """One Runtime's verbs: management, catalog and lifecycle, interaction, observation."""

    # -- management ------------------------------------------------------------------------

    async def summary(self) -> RuntimeSummary:
        """The Runtime's identity, status, limits and counts."""
        ...

    async def diagnostics(self, *, limit: int | None = None) -> list[Diagnostic]:
        """The newest diagnostics, oldest first."""
        ...

    async def list_profiles(self) -> list[ProfileEntry]:
        """The profiles a Worker may be created on; never a credential."""
        ...

    # -- catalog and lifecycle -------------------------------------------------------------

    async def list_workers(
        self, *, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> WorkerPage:
        """A page of Workers in creation order."""
        ...

    async def create_worker(self, request: CreateWorkerRequest | None = None) -> WorkerDetail:
        """Create a Worker (and accept its ``initial_input`` in the same step)."""
        ...

    async def get_worker(self, worker_id: str, /) -> WorkerDetail:
        """A Worker's detail: summary, overview/usage and profile info."""
        ...

    async def stop_worker(self, worker_id: str, /, *, reason: str | None = None) -> StopAck:
        """Stop a Worker for good; a repeated stop returns the first acknowledgement."""
        ...

    async def cancel(
        self, worker_id: str, /, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelAck:
        """Abort the turn in flight, if any (and if it is ``turn_id``, when given)."""
        ...

    # -- interaction -----------------------------------------------------------------------

    async def send_input(self, worker_id: str, request: InputRequest, /) -> InputAck:
        """Give a Worker input: ``user`` input starts (or queues) a turn."""
        ...

    # -- observation -----------------------------------------------------------------------

    async def read_transcript(
        self, worker_id: str, /, *, start: int = 0, limit: int | None = None
    ) -> TranscriptPage:
        """A bounded page of the transcript, with the cursor to continue from."""
        ...

    def events(self, *, cursor: str | None = None, worker_id: str | None = None) -> EventStream:
        """The events after ``cursor`` (new events only without one), runtime-wide or for
        one Worker."""
        ...
