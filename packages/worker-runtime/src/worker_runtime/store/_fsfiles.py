"""Low-level files of the filesystem store: atomic snapshots, append-only JSONL files with a
dense offset index, and id encoding. Every OS error becomes a typed, path-free error."""

from __future__ import annotations

import base64
import errno
import os
import re
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ..errors import InvalidInput, RuntimeUnavailable
from ..models import is_valid_id

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "NOFOLLOW",
    "AppendFile",
    "IndexedLog",
    "StoreIOError",
    "atomic_write_bytes",
    "atomic_write_json",
    "decode_id",
    "encode_id",
    "fsync_dir",
    "io_errors",
    "open_file",
    "read_bytes",
    "read_json",
    "read_json_if_present",
]

_OFFSET = struct.Struct(">Q")
_PLAIN_ID = re.compile(r"^[a-z0-9_\-]{1,120}$")


class StoreIOError(RuntimeUnavailable):
    """A store file could not be read or written (read-only directory, disk full …)."""


@contextmanager
def io_errors(what: str) -> Iterator[None]:
    """Turn an OSError into a :class:`StoreIOError` whose message names no path."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise StoreIOError(
            f"store I/O failed while {what}: {reason}",
            details={"reason": "store_io", "errno": exc.errno},
        ) from None


def encode_id(value: str) -> str:
    """A path component for an id that can never escape its directory: ``w-<id>`` for plain
    lowercase ids, ``x-<base32>`` for other valid ids (dots, colons, capitals …), at most 194
    characters. Anything that is not a valid id is refused."""
    if not is_valid_id(value):
        raise InvalidInput("not a valid id", details={"field": "id"})
    if _PLAIN_ID.fullmatch(value):
        return "w-" + value
    return "x-" + base64.b32encode(value.encode("utf-8")).decode("ascii").rstrip("=").lower()


def decode_id(component: str) -> str | None:
    """The id of a path component made by :func:`encode_id`, or ``None``."""
    if component.startswith("w-"):
        value = component[2:]
        return value if _PLAIN_ID.fullmatch(value) else None
    if component.startswith("x-"):
        body = component[2:].upper()
        try:
            return base64.b32decode(body + "=" * (-len(body) % 8)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return None


#: Store files are private to the Runtime's user, and a planted symlink is never followed.
FILE_MODE = 0o600
DIR_MODE = 0o700
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: Pauses before each retry of an open that found no free descriptor (about 0.6 s in all).
_OPEN_RETRY_DELAYS_S = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.25)


def open_file(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` of a store file: ``mode`` (0600 unless configured) when it creates it,
    never through a symlink in the last component (ELOOP), retried a bounded number of times
    while the process (EMFILE) or the system (ENFILE) has no free descriptor: that is
    transient pressure (the serving layer sheds connections to leave descriptors for the
    store), not a failed write. Nothing has been
    written when it fails, so the last error is raised as it is."""
    flags |= NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for delay in _OPEN_RETRY_DELAYS_S:
        try:
            return os.open(path, flags, mode)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
        time.sleep(delay)
    return os.open(path, flags, mode)


def read_bytes(path: Path) -> bytes:
    fd = open_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def fsync_dir(path: Path) -> None:
    fd = open_file(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, value: Any, *, durable: bool, mode: int = FILE_MODE) -> None:
    """Write a snapshot atomically: temp file in the same directory, fsync, rename, fsync the
    directory (the fsyncs only when ``durable``)."""
    atomic_write_bytes(
        path, orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n", durable=durable, mode=mode
    )


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_write_json`)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    """Parse a JSON file; raises ``ValueError`` (with a reason, no path) when it is not JSON."""
    data = read_bytes(path)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None


def read_json_if_present(path: Path) -> Any:
    """:func:`read_json`, or ``None`` when the file does not exist."""
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


class AppendFile:
    """An append-only file descriptor that tracks its size."""

    __slots__ = ("fd", "size")

    def __init__(self, path: Path, mode: int = FILE_MODE) -> None:
        self.fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class IndexedLog:
    """A JSONL file plus a dense index of the byte offset of each record.

    Record ``k`` (0-based) starts at the offset stored at bytes ``8k..8k+8`` of the index, so a
    read of ``n`` records costs two small reads, whatever the size of the file. Lines that are
    not records (such as turn markers in a transcript) sit between records and are not indexed.
    """

    def __init__(self, data: Path, index: Path, mode: int = FILE_MODE) -> None:
        self.data_path = data
        self.index_path = index
        self.mode = mode  # of the files when it creates them
        self._data: AppendFile | None = None
        self._index: AppendFile | None = None

    @property
    def count(self) -> int:
        if self._index is not None:
            return self._index.size // 8
        try:
            return self.index_path.stat().st_size // 8
        except FileNotFoundError:
            return 0

    def _open(self) -> tuple[AppendFile, AppendFile]:
        if self._data is None or self._index is None:
            self._data = AppendFile(self.data_path, self.mode)
            self._index = AppendFile(self.index_path, self.mode)
        return self._data, self._index

    def append(self, lines: list[tuple[bytes, bool]]) -> None:
        """Append lines; each ``(line, indexed)`` (a record, or an unindexed marker line)."""
        data, index = self._open()
        offsets = bytearray()
        chunk = bytearray()
        base = data.size
        for line, indexed in lines:
            if indexed:
                offsets += _OFFSET.pack(base + len(chunk))
            chunk += line
        data.write(bytes(chunk))
        if offsets:
            index.write(bytes(offsets))

    def sizes(self) -> tuple[int, int]:
        """``(data bytes, record count)`` as written so far."""
        if self._data is not None and self._index is not None:
            return self._data.size, self._index.size // 8
        data = self.data_path.stat().st_size if self.data_path.exists() else 0
        return data, self.count

    def truncate(self, data_bytes: int, count: int) -> bool:
        """Cut the files back to a checkpointed size; ``False`` if they are shorter."""
        self.close()
        have_data = _size(self.data_path)
        have_index = _size(self.index_path)
        if (have_data or 0) < data_bytes or (have_index or 0) < count * 8:
            return False
        if have_data is not None and have_data > data_bytes:
            os.truncate(self.data_path, data_bytes)
        if have_index is not None and have_index != count * 8:
            os.truncate(self.index_path, count * 8)
        return True

    def fsync_data(self) -> None:
        if self._data is not None:
            self._data.fsync()

    def fsync(self) -> None:
        if self._data is not None and self._index is not None:
            self._data.fsync()
            self._index.fsync()

    def fsync_files(self) -> None:
        """Fsync both files through descriptors of their own (for a worker thread, while
        the loop may append to them: what was written before the call is durable after it)."""
        for path in (self.data_path, self.index_path):
            try:
                fd = open_file(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        for f in (self._data, self._index):
            if f is not None:
                f.close()
        self._data = self._index = None

    def offsets(self, start: int, count: int) -> list[int]:
        """The offsets of records ``start`` … ``start + count - 1`` (fewer at the end)."""
        try:
            fd = open_file(self.index_path, os.O_RDONLY)
        except FileNotFoundError:
            return []  # not made yet: no records
        with os.fdopen(fd, "rb") as f:
            f.seek(start * 8)
            raw = f.read(count * 8)
        return [_OFFSET.unpack_from(raw, i)[0] for i in range(0, len(raw) - len(raw) % 8, 8)]

    def read_records(self, start: int, count: int) -> list[bytes]:
        """The raw lines from record ``start`` up to (not including) record ``start + count``,
        markers included, split on newlines."""
        offs = self.offsets(start, count + 1)
        if not offs:
            return []
        with os.fdopen(open_file(self.data_path, os.O_RDONLY), "rb") as f:
            f.seek(offs[0])
            if len(offs) == count + 1:
                raw = f.read(offs[-1] - offs[0])
            else:
                raw = f.read()
        return [line for line in raw.split(b"\n") if line]

    def read_span(self, begin: int, end: int) -> list[bytes]:
        """The lines between byte offsets ``begin`` and ``end`` of the data file (both on
        line boundaries, such as record offsets and sizes taken earlier)."""
        if end <= begin:
            return []
        with os.fdopen(open_file(self.data_path, os.O_RDONLY), "rb") as f:
            f.seek(begin)
            raw = f.read(end - begin)
        return [line for line in raw.split(b"\n") if line]

    def read_span_raw(self, begin: int, end: int | None = None) -> bytes:
        """The data file's bytes from offset ``begin`` up to ``end`` (fewer at its end; to its
        end without one; empty when it is missing)."""
        if end is not None and end <= begin:
            return b""
        try:
            fd = open_file(self.data_path, os.O_RDONLY)
        except FileNotFoundError:
            return b""
        with os.fdopen(fd, "rb") as f:
            f.seek(begin)
            return f.read() if end is None else f.read(end - begin)

    def scan(self, begin: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every line of the data file from byte ``begin`` (a line boundary) with its offset
        (a torn last line included)."""
        raw = self.read_span_raw(begin)
        offset = begin
        for line in raw.split(b"\n"):
            if line:
                yield offset, line
            offset += len(line) + 1

    def reindex_tail(
        self, data_bytes: int, keep: int, offsets: list[int], *, durable: bool
    ) -> None:
        """A repair that rewrites no record: cut the data file to ``data_bytes`` (dropping a
        torn last line) and its index to its first ``keep`` entries followed by ``offsets``.
        Each step leaves files a later open repairs the same way, so a crash between them
        loses nothing."""
        self.close()
        have = _size(self.data_path)
        if have is not None and have > data_bytes:
            os.truncate(self.data_path, data_bytes)
            if durable:
                fd = open_file(self.data_path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fd = open_file(self.index_path, os.O_RDWR | os.O_CREAT, self.mode)
        try:
            os.ftruncate(fd, keep * 8)
            body = b"".join(_OFFSET.pack(o) for o in offsets)
            view = memoryview(body)
            at = keep * 8
            while view:
                written = os.pwrite(fd, view, at)
                view, at = view[written:], at + written
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def rewrite(self, lines: list[tuple[bytes, bool]], *, durable: bool) -> None:
        """Replace the data file and its index with ``lines`` (a repair), atomically."""
        self.close()
        tmp_data = self.data_path.with_name(f".{self.data_path.name}.tmp")
        tmp_index = self.index_path.with_name(f".{self.index_path.name}.tmp")
        for tmp in (tmp_data, tmp_index):
            tmp.unlink(missing_ok=True)
        rebuilt = IndexedLog(tmp_data, tmp_index, self.mode)
        if lines:
            rebuilt.append(lines)
        else:
            rebuilt._open()
        if durable:
            rebuilt.fsync()
        rebuilt.close()
        os.replace(tmp_data, self.data_path)
        os.replace(tmp_index, self.index_path)
        if durable:
            fsync_dir(self.data_path.parent)
