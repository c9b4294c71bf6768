"""A read-only projection of an fs-store root on this machine
(:class:`~worker_runtime.store.view.StoreView`): list, detail and transcript; every command
is ``unsupported_operation``. Its root path never leaves this object."""

from __future__ import annotations

from pathlib import Path

from worker_runtime import RuntimeUnavailable
from worker_runtime.events import now_rfc3339
from worker_runtime.models import RuntimeCounts
from worker_runtime.store.view import StoreView

from .base import READ_ONLY, RuntimeInfo, Source, SourceDiagnostic, SourceStatus

__all__ = ["LocalSource"]


class LocalSource(Source):
    """A store root that no live source serves: a live source with its runtime_id replaces
    it (``live`` is false), and it has no event stream."""

    kind = "local_compatibility"
    live = False

    def __init__(self, view: StoreView, display_name: str | None = None) -> None:
        name = display_name or f"{view.runtime_id} (local store, read-only)"
        super().__init__(view.runtime_id, name, view, READ_ONLY)
        self.view = view

    @classmethod
    async def open(cls, root: Path, display_name: str | None = None) -> LocalSource:
        """Read the root once (its runtime_id names the source)."""
        return cls(await StoreView.open(root), display_name)

    async def info(self) -> RuntimeInfo:
        at = now_rfc3339()
        diagnostics = [
            SourceDiagnostic(
                severity="info",
                code="local.read_only",
                message="a read-only projection of a Runtime's store on this machine; "
                "commands are not supported",
                at=at,
            )
        ]
        counts: RuntimeCounts | None = None
        try:
            state = await self.view.state()
        except RuntimeUnavailable as exc:
            diagnostics.append(
                SourceDiagnostic(
                    severity="error", code="local.store_unreadable", message=exc.message, at=at
                )
            )
            status: SourceStatus = "unavailable"
        else:
            counts = state.counts
            status = "running" if state.writer_alive else "stopped"
            if state.writer_alive:
                diagnostics.append(
                    SourceDiagnostic(
                        severity="info",
                        code="local.live_writer",
                        message="a Runtime process is writing to this store; the view "
                        "follows it on every read",
                        at=at,
                    )
                )
            if state.skipped_workers:
                diagnostics.append(
                    SourceDiagnostic(
                        severity="warning",
                        code="local.worker_skipped",
                        message=f"{state.skipped_workers} Worker record(s) could not "
                        "be read and are not shown",
                        at=at,
                    )
                )
        return RuntimeInfo(
            runtime_id=self.runtime_id,
            display_name=self.display_name,
            kind=self.kind,
            implementation="fs-store root (read-only)",
            status=status,
            capabilities=self.capabilities,
            diagnostics=diagnostics,
            counts=counts,
        )
