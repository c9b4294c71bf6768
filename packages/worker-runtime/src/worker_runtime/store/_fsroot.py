"""The fs store's root and what its parts share (private to ``store.fs``).

:class:`StoreRoot` is handed to every part of the store: the root's paths and permission
modes, the fsync mode, the failpoints, the diagnostics and the quarantine, the fail-stop, the
lock on the root and ``runtime.json``. It holds no log and no projection.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Any, Literal, NoReturn

from ..errors import InvalidInput, RuntimeUnavailable, StoreCorrupt
from ..events import new_incarnation, now_rfc3339
from ..models import Limits
from . import StoreDiagnostic
from ._failpoints import Failpoints
from ._fsfiles import NOFOLLOW, StoreIOError, atomic_write_json, open_file, read_json

__all__ = ["SCHEMA_VERSION", "STORE_MODES", "FsyncMode", "StoreMode", "StoreRoot", "check_modes"]

FsyncMode = Literal["always", "batch", "never"]
SCHEMA_VERSION = 1
StoreMode = Literal["private", "group"]
#: The named permission sets of a store root (``yoi-runtime --store-mode``): ``(file mode,
#: directory mode)``. ``private`` (the default) is for the Runtime's user alone; ``group``
#: lets the directory's group read the store (a backup job, a read-only ``FsStoreReader``).
#: The process umask can only narrow them.
STORE_MODES: dict[str, tuple[int, int]] = {"private": (0o600, 0o700), "group": (0o640, 0o750)}


def check_modes(file_mode: int, dir_mode: int) -> None:
    """Refuse modes that let anyone but the owner write, or that lock the owner out."""
    for what, mode, needs in (("file_mode", file_mode, 0o600), ("dir_mode", dir_mode, 0o700)):
        if not isinstance(mode, int) or isinstance(mode, bool) or mode & ~0o777:
            raise InvalidInput(f"{what} must be a permission mode such as {oct(needs)}")
        if mode & 0o022:
            raise InvalidInput(
                f"{what} {oct(mode)} lets its group or everyone write to the store; "
                "only its owner may",
                details={"field": what},
            )
        if mode & needs != needs:
            raise InvalidInput(
                f"{what} {oct(mode)} must give its owner at least {oct(needs)}",
                details={"field": what},
            )
    if file_mode & 0o111:
        raise InvalidInput("file_mode must not make store files executable")


class StoreRoot:
    """One store root: its paths and modes, diagnostics, quarantine, fail-stop and lock."""

    def __init__(self, path: Path, *, fsync: FsyncMode, file_mode: int, dir_mode: int) -> None:
        self.path = path
        self.events_dir = path / "events"
        self.workers_dir = path / "workers"
        self.quarantine_dir = path / "quarantine"
        self.catalog_path = path / "catalog.jsonl"
        self.fsync_mode: FsyncMode = fsync
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.fp = Failpoints()  # armed at open from YOI_STORE_FAILPOINTS (tests only)
        self.diagnostics: list[StoreDiagnostic] = []
        self.quarantined = 0
        self.failed: StoreIOError | None = None
        self.lock_fd: int | None = None
        self.runtime_id = ""
        self.incarnation = ""
        self.record: dict[str, Any] = {}

    @property
    def durable(self) -> bool:
        """Whether files are synced (every fsync mode but ``never``)."""
        return self.fsync_mode != "never"

    # -- diagnostics, quarantine, fail-stop -------------------------------------------------

    def diagnose(
        self,
        severity: Literal["info", "warning", "error"],
        code: str,
        message: str,
        worker_id: str | None = None,
    ) -> None:
        self.diagnostics.append(StoreDiagnostic(severity, code, message, worker_id))

    def take_diagnostics(self) -> list[StoreDiagnostic]:
        found, self.diagnostics = self.diagnostics, []
        return found

    def quarantine(self, path: Path, offset: int, line: bytes, reason: str) -> None:
        """Keep a bad record aside in ``quarantine/``, with its file, offset and reason."""
        self.quarantine_dir.mkdir(mode=self.dir_mode, exist_ok=True)
        self.quarantined += 1
        relative = path.relative_to(self.path).as_posix()
        record = {
            "file": relative,
            "offset": offset,
            "reason": reason,
            "content": line.decode("utf-8", errors="replace")[:4096],
            "at": now_rfc3339(),
        }
        name = f"{int(time.time() * 1000)}-{self.quarantined}.json"
        atomic_write_json(self.quarantine_dir / name, record, durable=True, mode=self.file_mode)
        self.diagnose(
            "warning",
            "store.record_quarantined",
            f"a bad record in {relative} (byte {offset}) was quarantined: {reason}",
        )

    def fail(self, exc: OSError) -> NoReturn:
        """Fail stop: every later write (and read) of the store is refused."""
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        self.failed = StoreIOError(
            f"the store failed to write: {reason}; the Runtime accepts no more commands",
            details={"reason": "store_failed", "errno": exc.errno},
        )
        raise self.failed from None

    def check_failed(self) -> None:
        if self.failed is not None:
            raise self.failed

    # -- the root, its lock and runtime.json ----------------------------------------------------

    def check(self) -> None:
        """Refuse a root another user owns or others may write to, and planted symlinks."""
        info = os.lstat(self.path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            self._unsafe("the store root is not a directory (a symlink is not accepted)")
        if info.st_uid != os.geteuid():
            self._unsafe("the store root is owned by another user")
        if info.st_mode & 0o022:
            self._unsafe("the store root is writable by its group or by everyone; chmod 700 it")
        for name in ("events", "workers", "quarantine", "runtime.json", "runtime.lock"):
            try:
                entry = os.lstat(self.path / name)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(entry.st_mode):
                self._unsafe(f"{name} in the store root is a symlink; it is not followed")

    @staticmethod
    def _unsafe(why: str) -> NoReturn:
        raise RuntimeUnavailable(
            f"refusing to open the store: {why}", details={"reason": "store_unsafe"}
        )

    def lock(self) -> None:
        """Lock the root directory itself (it cannot be unlinked while it is the root) and
        keep the pid in runtime.lock for people and readers; a second writer is refused even
        when runtime.lock was deleted under the live one."""
        self.check()
        dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dir_fd)
            raise RuntimeUnavailable(
                "the store is locked by another process (runtime.lock); one Runtime process "
                "per store root",
                details={"reason": "store_locked", "lock": "runtime.lock"},
            ) from None
        try:
            fd = open_file(self.path / "runtime.lock", os.O_RDWR | os.O_CREAT, self.file_mode)
        except BaseException:
            os.close(dir_fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        self.lock_fd = dir_fd

    def unlock(self) -> None:
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = None

    def open_record(
        self, runtime_id: str, limits: Limits, *, segment_max: int, max_segments: int | None
    ) -> bool:
        """Read (or, for a new root, prepare) ``runtime.json``; whether the last shutdown
        was clean."""
        path = self.path / "runtime.json"
        if not path.exists():
            if any(self.events_dir.glob("*.jsonl")) or any(self.workers_dir.glob("*")):
                raise StoreCorrupt("runtime.json is missing from a store that holds data")
            self.runtime_id = runtime_id
            self.incarnation = new_incarnation()
            self.record = {
                "schema_version": SCHEMA_VERSION,
                "runtime_id": runtime_id,
                "incarnation": self.incarnation,
                "created_at": now_rfc3339(),
                "limits": limits.model_dump(mode="json"),
                "fsync": self.fsync_mode,
                "segment_max_events": segment_max,
                "max_segments": max_segments,
                "clean_shutdown": True,
            }
            return True
        try:
            record = read_json(path)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            version = record.get("schema_version")
            if version != SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"this store root was written by another version of yoi (schema_version "
                    f"{str(version)[:20]}); this version reads schema_version {SCHEMA_VERSION}",
                    details={"reason": "foreign_version", "schema_version": str(version)[:20]},
                )
            stored_id, incarnation = record["runtime_id"], record["incarnation"]
            if not isinstance(stored_id, str) or not isinstance(incarnation, str):
                raise ValueError("runtime_id and incarnation must be strings")
        except (ValueError, KeyError) as exc:
            raise StoreCorrupt(f"runtime.json is corrupt: {exc}") from None
        if stored_id != runtime_id:
            raise InvalidInput(
                f"this store root belongs to runtime '{stored_id}', not '{runtime_id}'",
                details={"stored_runtime_id": stored_id, "runtime_id": runtime_id},
            )
        self.runtime_id = stored_id
        self.incarnation = incarnation
        self.record = record
        return bool(record.get("clean_shutdown", False))

    def new_incarnation(self) -> None:
        """Start a new incarnation (recorded by the next :meth:`mark_running`)."""
        self.incarnation = self.record["incarnation"] = new_incarnation()

    def mark_running(self, *, clean: bool, head: int) -> None:
        self.record["clean_shutdown"] = clean
        self.record["head"] = head  # no later open may hand out a position at or below it
        self.record["fsync"] = self.fsync_mode
        atomic_write_json(
            self.path / "runtime.json", self.record, durable=True, mode=self.file_mode
        )

    def read_checkpoint(self) -> int:
        """The position ``events/checkpoint.json`` names (0: none, or corrupt)."""
        try:
            raw = read_json(self.events_dir / "checkpoint.json")
            return int(raw["position"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError):
            self.diagnose(
                "warning",
                "store.checkpoint_ignored",
                "events/checkpoint.json is corrupt; the whole log is replayed",
            )
            return 0

    def write_checkpoint(self, position: int) -> None:
        atomic_write_json(
            self.events_dir / "checkpoint.json",
            {"position": position},
            durable=self.durable,
            mode=self.file_mode,
        )
