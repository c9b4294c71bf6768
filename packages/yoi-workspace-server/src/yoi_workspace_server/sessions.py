"""Browser sessions, kept server-side in the Backend's SQLite control plane.

A session is a random id (256 bits) that the browser holds in the ``yoi_session`` cookie; the
database stores only its SHA-256, with the time it was created and last used. A session ends
when it has been idle for ``idle_s``, ``max_s`` after it was created, or at once on sign-out.
Sessions survive a Backend restart (the table is read back at start-up), unless the token
changed in between (:meth:`Sessions.bind_token`): a rotated token ends every session.

:class:`FailedLogins` counts failed sign-ins and bad tokens per client, so that a burst of
them is answered with ``429 too_many_requests`` for a while. It only ever refuses a request
that failed anyway: a valid session or token always passes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailedLogins", "SessionInfo", "Sessions"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS browser_sessions (
    id_hash    TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    last_seen  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS browser_token (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    salt        BLOB NOT NULL,
    fingerprint BLOB NOT NULL
);
"""


def _fingerprint(token: str, salt: bytes) -> bytes:
    # scrypt, so that a copy of the database does not make a weak configured token cheap
    # to guess offline.
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class SessionInfo:
    created_at: float
    last_seen: float
    stored_last_seen: float

    def expires_at(self, idle_s: float, max_s: float) -> float:
        """When this session ends unless it is used again."""
        return min(self.created_at + max_s, self.last_seen + idle_s)


class Sessions:
    """The session table of the control plane, with every live session cached in memory (the
    Backend is its database's only user). A use is written back at most once per
    ``touch_s`` (a tenth of ``idle_s``, at most a minute), not on every request."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        idle_s: float,
        max_s: float,
        max_sessions: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.idle_s = idle_s
        self.max_s = max_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._touch_s = min(60.0, idle_s / 10)
        db.executescript(_SCHEMA)
        self._live: OrderedDict[str, SessionInfo] = OrderedDict()
        now = clock()
        self._purge(now)
        rows = db.execute(
            "SELECT id_hash, created_at, last_seen FROM browser_sessions ORDER BY created_at"
        ).fetchall()
        for id_hash, created_at, last_seen in rows:
            self._live[str(id_hash)] = SessionInfo(created_at, last_seen, last_seen)

    def bind_token(self, token: str) -> bool:
        """Remember which token the sessions were opened with; when the token has changed
        since (it was rotated), end every session. Whether sessions were ended."""
        row = self._db.execute("SELECT salt, fingerprint FROM browser_token").fetchone()
        if row is not None and hmac.compare_digest(_fingerprint(token, row[0]), row[1]):
            return False
        salt = secrets.token_bytes(16)
        self._db.execute(
            "INSERT INTO browser_token VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE "
            "SET salt = excluded.salt, fingerprint = excluded.fingerprint",
            (salt, _fingerprint(token, salt)),
        )
        ended = bool(self._live) and row is not None
        self._db.execute("DELETE FROM browser_sessions")
        self._live.clear()
        return ended

    def _purge(self, now: float) -> None:
        self._db.execute(
            "DELETE FROM browser_sessions WHERE created_at <= ? OR last_seen <= ?",
            (now - self.max_s, now - self.idle_s),
        )

    def _expired(self, info: SessionInfo, now: float) -> bool:
        return now >= info.expires_at(self.idle_s, self.max_s)

    def create(self) -> tuple[str, SessionInfo]:
        """A new session: its id (for the cookie; never stored) and its times."""
        now = self._clock()
        self._purge(now)
        for id_hash in [h for h, info in self._live.items() if self._expired(info, now)]:
            del self._live[id_hash]
        while len(self._live) >= self._max_sessions:  # the oldest sign-in goes first
            oldest, _ = self._live.popitem(last=False)
            self._db.execute("DELETE FROM browser_sessions WHERE id_hash = ?", (oldest,))
        session_id = secrets.token_urlsafe(32)
        id_hash = _hash(session_id)
        self._db.execute("INSERT INTO browser_sessions VALUES (?, ?, ?)", (id_hash, now, now))
        info = self._live[id_hash] = SessionInfo(now, now, now)
        return session_id, info

    def check(self, session_id: str) -> SessionInfo | None:
        """The live session with this id, marked as used now; ``None`` for an unknown or
        expired one (an expired one is deleted)."""
        if not session_id or len(session_id) > 200:
            return None
        id_hash = _hash(session_id)
        info = self._live.get(id_hash)
        if info is None:
            return None
        now = self._clock()
        if self._expired(info, now):
            self._drop(id_hash)
            return None
        info.last_seen = now
        if now - info.stored_last_seen >= self._touch_s:
            self._db.execute(
                "UPDATE browser_sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash)
            )
            info.stored_last_seen = now
        return info

    def end(self, session_id: str) -> bool:
        """End a session at once; whether it existed."""
        if not session_id or len(session_id) > 200:
            return False
        return self._drop(_hash(session_id))

    def _drop(self, id_hash: str) -> bool:
        self._db.execute("DELETE FROM browser_sessions WHERE id_hash = ?", (id_hash,))
        return self._live.pop(id_hash, None) is not None


class FailedLogins:
    """Failed sign-ins and bad tokens per client address: more than ``budget`` of them within
    ``window_s`` make the client ``throttled`` until the window has moved past them. At most
    ``max_clients`` addresses are tracked (the least recent is forgotten first)."""

    def __init__(
        self,
        *,
        budget: int = 10,
        window_s: float = 60.0,
        max_clients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = budget
        self._window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or ``None`` when it is not throttled."""
        now = self._clock()
        times = self._recent(client, now)
        if times is None or len(times) <= self._budget:
            return None
        return max(0.0, times[-self._budget - 1] + self._window_s - now)

    def record(self, client: str) -> None:
        """Count one failure of ``client``."""
        now = self._clock()
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = deque(maxlen=self._budget * 4)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(client)
        times.append(now)
