"""The fs store's catalog: every Worker's record and checkpointed state in one file, so an
open reads one file instead of two small files per Worker (private to ``store.fs``).

``<root>/catalog.jsonl`` is append-only. A checkpoint appends one line per Worker it
snapshotted (``{"w", "r", "s", "f"}``: id, record, state, projection-file sizes), each after that
Worker's own snapshot, then a ``{"checkpoint": P}`` marker, synced, before
``events/checkpoint.json`` names ``P``. The last line of a Worker wins. So the catalog is never
behind ``checkpoint.json``: a catalog whose newest marker is older (restored from a backup,
damaged), or that has a bad line, is stale; the store then rebuilds it from the Workers' own
files and says so (``store.catalog_rebuilt``). A torn last line (a crash while appending) is
dropped. The file is compacted (one line per Worker) when superseded lines dominate, by count
or by bytes: a busy Worker's line carries its idempotency keys (up to the per-Worker bound), so
a few such Workers checkpointed often would otherwise grow the file, and the next open's read,
far past what the newest lines hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._fsfiles import FILE_MODE, AppendFile, atomic_write_bytes, read_bytes

__all__ = ["Catalog", "CatalogEntry", "read_catalog"]

COMPACT_SLACK_BYTES = 1 << 20


@dataclass
class CatalogEntry:
    record: dict[str, Any]
    state: dict[str, Any]
    files: dict[str, list[int]]
    line: bytes


@dataclass
class CatalogRead:
    entries: dict[str, CatalogEntry] = field(default_factory=dict)
    marker: int = -1
    lines: int = 0
    size: int = 0  # bytes of the lines read
    live: int = 0  # bytes of the newest line of each Worker
    problem: str | None = None


def entry_line(worker_id: str, record: dict[str, Any], state: Any, files: Any) -> bytes:
    line: bytes = orjson.dumps({"w": worker_id, "r": record, "s": state, "f": files}) + b"\n"
    return line


def read_catalog(path: Path, checkpoint: int) -> CatalogRead:
    """The catalog's entries, or a ``problem`` saying why it cannot be trusted."""
    out = CatalogRead()
    try:
        raw = read_bytes(path)
    except FileNotFoundError:
        out.problem = "missing" if checkpoint > 0 else None
        return out
    lines = raw.split(b"\n")
    if lines and lines[-1]:
        lines.pop()  # torn: the process died while appending it
    for line in lines:
        if not line:
            continue
        out.lines += 1
        try:
            item = orjson.loads(line)
            if "checkpoint" in item:
                out.marker = int(item["checkpoint"])
                continue
            out.entries[str(item["w"])] = CatalogEntry(
                item["r"], item["s"], item["f"], line + b"\n"
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            out.problem = "a line is not a catalog record"
            return out
    out.size = sum(len(line) + 1 for line in lines if line)
    out.live = sum(len(entry.line) for entry in out.entries.values())
    if out.marker < checkpoint:
        out.problem = f"it is older than the checkpoint ({out.marker} < {checkpoint})"
    return out


class Catalog:
    """The writer's side: appends entries and markers, compacts."""

    def __init__(
        self, path: Path, lines: int, mode: int = FILE_MODE, *, size: int = 0, live: int = 0
    ) -> None:
        self.path = path
        self.mode = mode
        self.lines = lines
        self.size = size  # bytes in the file
        self.live = live  # bytes its newest lines held when it was read or last rewritten
        self._file: AppendFile | None = None

    def append(self, line: bytes) -> None:
        if self._file is None:
            self._file = AppendFile(self.path, self.mode)
        self._file.write(line)
        self.lines += 1
        self.size += len(line)

    def mark(self, position: int, *, durable: bool) -> None:
        self.append(orjson.dumps({"checkpoint": position}) + b"\n")
        if durable and self._file is not None:
            self._file.fsync()

    def needs_compaction(self, workers: int) -> bool:
        """Superseded lines outnumber the live ones, or outweigh them by a mebibyte. Each
        rewrite writes at most what was live plus what was appended since, so the work stays
        proportional to what checkpoints append."""
        return self.lines > 2 * workers + 64 or self.size > 2 * self.live + COMPACT_SLACK_BYTES

    def rewrite(self, lines: list[bytes], position: int, *, durable: bool) -> None:
        """Replace the catalog with one line per Worker and a marker, atomically."""
        self.close()
        body = b"".join(lines) + orjson.dumps({"checkpoint": position}) + b"\n"
        atomic_write_bytes(self.path, body, durable=durable, mode=self.mode)
        self.lines = len(lines) + 1
        self.size = self.live = len(body)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
