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
from collections.abc import Callable

from ..errors import InvalidInput

__all__ = ["ENV", "HOOK_POINTS", "POINTS", "Failpoints"]

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

#: Points where a test may run a hook of its own in the process (:meth:`Failpoints.on`),
#: e.g. to hold a disk read and see that the event loop keeps serving meanwhile.
HOOK_POINTS = (
    "recovery.parse",  # the open parsing one record of the active segment's tail
    "read.events",  # reading events from disk (a cursor resumed, a subscription catching up)
    "read.history",  # reading a recovered Worker's conversation for its first turn
    "checkpoint.slice",  # writing a checkpoint slice's fsyncs and snapshots
)


class Failpoints:
    """The armed points of one store (none unless ``YOI_STORE_FAILPOINTS`` names some)."""

    __slots__ = ("_armed", "_hits", "_hooks")

    def __init__(self, spec: str | None = None) -> None:
        self._armed: dict[str, int] = {}
        self._hooks: dict[str, Callable[[], None]] = {}
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
    def from_env(cls, hooks: Failpoints | None = None) -> Failpoints:
        """The points ``YOI_STORE_FAILPOINTS`` arms, keeping the hooks of ``hooks``."""
        armed = cls(os.environ.get(ENV))
        if hooks is not None:
            armed._hooks.update(hooks._hooks)
        return armed

    def on(self, name: str, hook: Callable[[], None] | None) -> None:
        """Run ``hook`` (in whatever thread reaches the point) each time point ``name`` of
        :data:`HOOK_POINTS` is reached; ``None`` removes it. For tests."""
        if name not in HOOK_POINTS:
            raise InvalidInput(f"'{name[:80]}' is not a hook point", details={"field": "name"})
        if hook is None:
            self._hooks.pop(name, None)
        else:
            self._hooks[name] = hook

    def hit(self, name: str) -> None:
        """Reached point ``name``: SIGKILL the process if it is armed for this time (or run
        the test's hook there)."""
        if self._hooks:
            hook = self._hooks.get(name)
            if hook is not None:
                hook()
        if not self._armed:
            return
        nth = self._armed.get(name)
        if nth is None:
            return
        count = self._hits[name] = self._hits.get(name, 0) + 1
        if count == nth:
            os.kill(os.getpid(), signal.SIGKILL)
