"""The runtime-wide event log, its cursors, and subscriptions (contract §3–§4).

Every change is an :class:`Event` in one ordered log. The log keeps a bounded backlog in memory:
a runtime-wide window of the newest ``runtime_event_window`` events (and at most about
``runtime_event_window_bytes`` of them: the oldest leave first, from the window and from their
Worker's ring), and for each Worker a ring of its newest ``event_backlog`` events. A cursor
names one event: it encodes the log's *incarnation* and the event's position, and clients
compare cursors only for equality.

Subscriptions pull from the backlog instead of receiving copies: appending an event costs the
same whatever the number of subscribers, and no subscriber can block the Runtime or another
subscriber. A subscription's queue is its unread stretch of the backlog (bounded by the backlog
itself). Overflow policy: a subscriber that falls behind catches up from the backlog for as long
as the backlog still holds its next event; once it does not (a proven gap), the subscriber gets a
``diagnostic`` notice with ``code: resync_required`` and its iterator ends. Nothing is skipped
silently.
"""

from __future__ import annotations

import bisect
import weakref
from collections import deque
from typing import Any, Literal, Protocol

import anyio

from ._cursors import decode_cursor as decode_cursor  # re-exported: the client
from ._cursors import encode_cursor as encode_cursor  # re-exported: the store reader
from ._cursors import new_incarnation as new_incarnation  # re-exported: the stores
from ._event import Event, _approx_size, notice, now_rfc3339
from ._eventdata import EventKind  # the one definition of the kinds
from ._subscription import Subscription, _Gap
from .errors import CursorExpired, CursorUnknown

__all__ = ["Event", "EventKind", "Subscription", "notice", "now_rfc3339"]


class _Signal:
    """Wakes every waiter on the next notify; costs nothing while nobody waits."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class _WorkerLog:
    __slots__ = ("evicted", "ring", "signal")

    def __init__(self, capacity: int, evicted: int) -> None:
        self.ring: deque[Event] = deque(maxlen=capacity)
        self.evicted = evicted  # the newest position the ring cannot answer for
        self.signal: _Signal | None = None


class Archive(Protocol):
    """Where events older than the in-memory backlog can still be read (a durable store)."""

    def read_events(self, after: int, limit: int, worker_id: str | None) -> list[Event] | None: ...

    async def read_events_async(
        self, after: int, limit: int, worker_id: str | None
    ) -> list[Event] | None: ...

    @property
    def oldest_position(self) -> int: ...


class EventLog:
    """The in-memory backlog of the event log, with publication and subscriptions.

    Appending makes an event part of the log; :meth:`publish` makes every appended event visible
    to readers (the Runtime publishes once the store has made the events durable).
    """

    def __init__(
        self,
        *,
        runtime_id: str,
        incarnation: str,
        window: int,
        worker_backlog: int,
        head: int = 0,
        archive: Archive | None = None,
        window_bytes: int | None = None,
    ) -> None:
        self.runtime_id = runtime_id
        self.incarnation = incarnation
        self._cap = window
        self._buf: list[Event | None] = [None] * window
        self._sizes: list[int] = [0] * window
        self._bytes = 0  # approximate size of the events in the window
        self._budget = window_bytes
        self._first = head + 1
        self._head = head
        self._visible = head
        self._worker_backlog = worker_backlog
        self._base = head  # events up to here are only in the archive
        self._archive = archive
        self._workers: dict[str, _WorkerLog] = {}
        self._signal = _Signal()
        self._notify_workers: set[str] = set()
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self.closed = False

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        kind: EventKind,
        worker_id: str | None,
        turn_id: str | None,
        data: dict[str, Any],
    ) -> Event:
        event = self.prepare(kind, worker_id, turn_id, data)
        self.record(event)
        return event

    def prepare(
        self,
        kind: EventKind,
        worker_id: str | None,
        turn_id: str | None,
        data: dict[str, Any],
    ) -> Event:
        """The next event, not yet in the log (a store records it first, then :meth:`record`)."""
        position = self._head + 1
        return Event(
            position,
            f"{self.incarnation}-{position:x}",
            kind,
            self.runtime_id,
            worker_id,
            turn_id,
            now_rfc3339(),
            data,
        )

    def record(self, event: Event) -> None:
        """Add a prepared event (the next position) to the log."""
        position = event.position
        if position != self._head + 1:
            raise ValueError("events are recorded in log order")
        worker_id = event.worker_id
        self._head = position
        slot = position % self._cap
        size = _approx_size(event.data)
        if position - self._first >= self._cap:
            self._first = position - self._cap + 1
            self._bytes -= self._sizes[slot]
        self._buf[slot] = event
        self._sizes[slot] = size
        self._bytes += size
        if worker_id is not None:
            wlog = self._workers.get(worker_id)
            if wlog is None:
                wlog = self._workers[worker_id] = _WorkerLog(self._worker_backlog, self._base)
            ring = wlog.ring
            if len(ring) == self._worker_backlog:
                wlog.evicted = ring[0].position
            ring.append(event)
            # Whoever waits when this is published must hear of it, even if it started waiting
            # only after the append.
            self._notify_workers.add(worker_id)
        if self._budget is not None and self._bytes > self._budget:
            self._evict_to_budget()

    def _evict_to_budget(self) -> None:
        """Drop the oldest events (never the newest) until the window is within its byte
        budget; each also leaves its Worker's ring, with anything older in that ring."""
        assert self._budget is not None
        buf, sizes, cap = self._buf, self._sizes, self._cap
        while self._bytes > self._budget and self._first < self._head:
            slot = self._first % cap
            event = buf[slot]
            buf[slot] = None
            self._bytes -= sizes[slot]
            sizes[slot] = 0
            self._first += 1
            if event is not None and event.worker_id is not None:
                wlog = self._workers.get(event.worker_id)
                if wlog is not None:
                    ring = wlog.ring
                    while ring and ring[0].position <= event.position:
                        wlog.evicted = ring.popleft().position

    def publish(self) -> None:
        """Make every appended event visible and wake the readers waiting for it."""
        if self._visible == self._head:
            return
        self._visible = self._head
        self._signal.notify()
        if self._notify_workers:
            for worker_id in self._notify_workers:
                signal = self._workers[worker_id].signal
                if signal is not None:
                    signal.notify()
            self._notify_workers.clear()

    def close(self) -> None:
        """End every subscription once it has read what was published."""
        self.closed = True
        self._signal.notify()
        for wlog in self._workers.values():
            if wlog.signal is not None:
                wlog.signal.notify()

    # -- reading ---------------------------------------------------------------------------

    @property
    def head(self) -> int:
        """Position of the newest visible event."""
        return self._visible

    @property
    def next_position(self) -> int:
        """The position the next appended event will get."""
        return self._head + 1

    def cursor_at(self, position: int) -> str:
        return encode_cursor(self.incarnation, position)

    @property
    def head_cursor(self) -> str:
        return self.cursor_at(self._visible)

    def position_of(self, cursor: str) -> int:
        """The position a cursor names in this log, or a typed cursor error."""
        incarnation, position = decode_cursor(cursor)
        if incarnation != self.incarnation or position > self._visible:
            raise CursorUnknown(
                "the cursor belongs to another incarnation or Runtime, or is beyond the head",
                details={"cursor": cursor[:200]},
            )
        return position

    def check_resumable(self, position: int, worker_id: str | None) -> None:
        """Raise :class:`CursorExpired` if the events after ``position`` are no longer held.
        An archive holds every event from its oldest position on, so that needs no read; only
        a cursor older than that reads one event from it on the loop (bounded and tiny: a
        binary search of a Worker's position index)."""
        if self._archive is not None and position + 1 >= self._archive.oldest_position:
            return
        try:
            self.read_after(position, 1, worker_id)
        except _Gap:
            raise self._expired(worker_id) from None

    async def read_page(self, position: int, limit: int, worker_id: str | None) -> list[Event]:
        """:meth:`read_after_async` for a reader that gave a cursor: a gap (the events were
        pruned meanwhile) is :class:`CursorExpired`."""
        try:
            return await self.read_after_async(position, limit, worker_id)
        except _Gap:
            raise self._expired(worker_id) from None

    def _expired(self, worker_id: str | None) -> CursorExpired:
        return CursorExpired(
            "the cursor is older than the retained backlog; re-read the transcript "
            "and subscribe from its cursor",
            details={"oldest_cursor": self.cursor_at(self.oldest_retained(worker_id))},
        )

    def oldest_retained(self, worker_id: str | None) -> int:
        """Position of the oldest event a read (of one Worker, if given) can still return."""
        if self._archive is not None:
            return min(self._archive.oldest_position, self._first)
        if worker_id is not None:
            wlog = self._workers.get(worker_id)
            if wlog is not None and wlog.ring and wlog.ring[0].position < self._first:
                return wlog.ring[0].position
        return self._first

    def read_after(self, position: int, limit: int, worker_id: str | None = None) -> list[Event]:
        """Up to ``limit`` visible events after ``position`` (one Worker's, if given), oldest
        first; raises :class:`_Gap` when the backlog no longer holds the next one."""
        visible = self._visible
        if worker_id is None:
            if position < self._first - 1:
                return self._from_archive(position, limit, None)
            end = min(visible, position + limit)
            buf, cap = self._buf, self._cap
            return [buf[p % cap] for p in range(position + 1, end + 1)]  # type: ignore[misc]
        wlog = self._workers.get(worker_id)
        if wlog is None:
            wlog = self._workers[worker_id] = _WorkerLog(self._worker_backlog, self._base)
        if position >= wlog.evicted:
            ring = wlog.ring
            if not ring or ring[-1].position <= position:
                return []
            start = bisect.bisect_right(ring, position, key=_position)
            out: list[Event] = []
            for i in range(start, min(len(ring), start + limit)):
                event = ring[i]
                if event.position > visible:
                    break
                out.append(event)
            return out
        if position >= self._first - 1:
            return self._scan_window(position, limit, worker_id)
        return self._from_archive(position, limit, worker_id)

    async def read_after_async(
        self, position: int, limit: int, worker_id: str | None = None
    ) -> list[Event]:
        """:meth:`read_after`, with a read from the archive (the disk) off the event loop."""
        if self._archive is None or not self._needs_archive(position, worker_id):
            return self.read_after(position, limit, worker_id)
        events = await self._archive.read_events_async(position, limit, worker_id)
        return self._from_archive(position, limit, worker_id, events)

    def _needs_archive(self, position: int, worker_id: str | None) -> bool:
        """Whether :meth:`read_after` would read the archive (mirrors its branches)."""
        if position >= self._first - 1:
            return False
        if worker_id is None:
            return True
        wlog = self._workers.get(worker_id)
        return position < (wlog.evicted if wlog is not None else self._base)

    def _from_archive(
        self,
        position: int,
        limit: int,
        worker_id: str | None,
        events: list[Event] | Literal[False] | None = False,
    ) -> list[Event]:
        if self._archive is None:
            raise _Gap
        if events is False:
            events = self._archive.read_events(position, limit, worker_id)
        if events is None:
            raise _Gap
        if not events:  # nothing on disk after it: the rest is in memory
            if worker_id is None:
                return self.read_after(self._first - 1, limit)
            return self._scan_window(max(position, self._first - 1), limit, worker_id)
        visible = self._visible
        return [e for e in events if e.position <= visible]

    def _scan_window(self, position: int, limit: int, worker_id: str) -> list[Event]:
        out: list[Event] = []
        buf, cap = self._buf, self._cap
        for p in range(position + 1, self._visible + 1):
            event = buf[p % cap]
            if event is not None and event.worker_id == worker_id:
                out.append(event)
                if len(out) == limit:
                    break
        return out

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, position: int, worker_id: str | None) -> Subscription:
        subscription = Subscription(self, position, worker_id)
        self._subscriptions.add(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return sum(1 for s in self._subscriptions if not s.closed)

    async def wait(self, worker_id: str | None) -> None:
        if worker_id is None:
            await self._signal.wait()
            return
        wlog = self._workers.get(worker_id)
        if wlog is None:
            wlog = self._workers[worker_id] = _WorkerLog(self._worker_backlog, self._base)
        if wlog.signal is None:
            wlog.signal = _Signal()
        await wlog.signal.wait()

    def notice(self, code: str, message: str, worker_id: str | None) -> Event:
        """A stream notice: a ``diagnostic`` event that is not part of the log."""
        return notice(self.runtime_id, worker_id, code, message, position=self._visible)


def _position(event: Event) -> int:
    return event.position
