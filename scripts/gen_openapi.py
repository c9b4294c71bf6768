"""Regenerate docs/api/runtime-openapi.json from the REST app (a test keeps it current)."""

from __future__ import annotations

import json
from pathlib import Path

from worker_runtime import Runtime
from worker_runtime.http import HttpSettings, create_app

OUT = Path(__file__).parents[1] / "docs" / "api" / "runtime-openapi.json"


def main() -> None:
    app = create_app(Runtime(runtime_id="openapi"), HttpSettings(token="unused", event_stream=True))
    document = app.openapi()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")


if __name__ == "__main__":
    main()
