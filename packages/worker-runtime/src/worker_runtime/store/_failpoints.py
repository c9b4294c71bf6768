"""Named fault-injection points of the fs store (in the spirit of etcd's failpoints).

They do nothing unless a test turns them on: the ``YOI_STORE_FAILPOINTS`` environment
variable, read once when a store is opened, names points and what happens there, e.g.
``recovery.replay=kill`` or ``checkpoint.worker=kill@3`` (on the third time it is reached).
``kill`` sends the process SIGKILL at that exact moment, so a test reaches a crash inside
recovery, a checkpoint, a segment roll or a prune deterministically. See docs/operations.md for
what each point proves.
"""

from __future__ import annotations

import os
import signal

from ..errors import InvalidInput

__all__ = ["ENV", "POINTS", "Failpoints"]

ENV = "YOI_STORE_FAILPOINTS"

#: Every point, in the order a store reaches them.
POINTS = (
    "recovery.truncate",  # a torn tail was cut off the active segment
    "recovery.quarantine",  # a bad record was kept aside, before the segment is rewritten
    "recovery.replay",  # projections were brought up to the head, nothing written yet
    "recovery.checkpoint",  # the pass writing what recovery rebuilt is partly done
    "recovery.roll",  # the post-crash position gap's segment exists, runtime.json not updated
    "append.written",  # events are with the OS but neither synced nor acknowledged
    "segment.roll",  # a new segment is active but holds no event yet
    "checkpoint.worker",  # one Worker's snapshot is written, the pass is not finished
    "checkpoint.finish",  # every snapshot of a pass is written, checkpoint.json is not
    "prune",  # a pruned segment's data file is gone, its index is not
)


class Failpoints:
    """The armed points of one store (none unless ``YOI_STORE_FAILPOINTS`` names some)."""

    __slots__ = ("_armed", "_hits")

    def __init__(self, spec: str | None = None) -> None:
        self._armed: dict[str, int] = {}
        self._hits: dict[str, int] = {}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, _, action = item.partition("=")
            verb, _, nth = action.partition("@")
            if name not in POINTS or verb != "kill" or (nth and not nth.isdigit()):
                raise InvalidInput(
                    f"{ENV}: '{item[:80]}' is not <point>=kill[@n] with a known point",
                    details={"field": ENV},
                )
            self._armed[name] = int(nth) if nth else 1

    @classmethod
    def from_env(cls) -> Failpoints:
        return cls(os.environ.get(ENV))

    def hit(self, name: str) -> None:
        """Reached point ``name``: SIGKILL the process if it is armed for this time."""
        if not self._armed:
            return
        nth = self._armed.get(name)
        if nth is None:
            return
        count = self._hits[name] = self._hits.get(name, 0) + 1
        if count == nth:
            os.kill(os.getpid(), signal.SIGKILL)
