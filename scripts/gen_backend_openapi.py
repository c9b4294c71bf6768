"""Regenerate docs/api/backend-openapi.json from the Backend's app (a test keeps it current).
The event streams are left out (see yoi_workspace_server._openapi)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from yoi_workspace_server._openapi import document
from yoi_workspace_server.app import BackendSettings, create_backend_app
from yoi_workspace_server.registry import ControlPlane, RuntimeRegistry
from yoi_workspace_server.sessions import Sessions

OUT = Path(__file__).parents[1] / "docs" / "api" / "backend-openapi.json"


async def backend_document() -> dict[str, Any]:
    """The Backend's document, from an app over an empty registry."""
    with tempfile.TemporaryDirectory() as tmp:
        control = ControlPlane(Path(tmp) / "backend.sqlite3")
        try:
            async with anyio.create_task_group() as tg:
                registry = RuntimeRegistry(control, tg)
                settings = BackendSettings(token="x" * 32)
                sessions = Sessions(
                    control.db, idle_s=settings.session_idle_s, max_s=settings.session_max_s
                )
                boundary = create_backend_app(registry, settings, sessions)
                return document(boundary.app.app)  # the boundary, the console files, the API
        finally:
            control.close()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(anyio.run(backend_document)), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
