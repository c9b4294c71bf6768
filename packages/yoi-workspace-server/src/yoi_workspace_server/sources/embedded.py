"""The Backend's own in-process Runtime, called directly: no HTTP, no token, no socket."""

from __future__ import annotations

from worker_runtime import Runtime

from .base import ALL_CAPABILITIES, RuntimeInfo, Source, SourceDiagnostic

__all__ = ["EmbeddedSource"]


class EmbeddedSource(Source):
    """The embedded Runtime: every verb, its own diagnostics (``embedded.`` codes)."""

    kind = "embedded"

    def __init__(self, runtime: Runtime, display_name: str) -> None:
        super().__init__(runtime.runtime_id, display_name, runtime, ALL_CAPABILITIES)
        self.runtime = runtime

    async def info(self) -> RuntimeInfo:
        summary = await self.api.summary()
        diagnostics = [
            SourceDiagnostic(
                severity=d.severity, code=f"embedded.{d.code}", message=d.message, at=d.at
            )
            for d in await self.api.diagnostics(limit=20)
        ]
        return RuntimeInfo(
            runtime_id=self.runtime_id,
            display_name=self.display_name,
            kind="embedded",
            implementation=f"worker_runtime.Runtime ({summary.store} store)",
            status="running" if summary.status == "running" else "stopped",
            capabilities=self.capabilities,
            diagnostics=diagnostics,
            counts=summary.counts,
        )
