"""Schemathesis fuzzes the served OpenAPI document against a real yoi-runtime process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")

from .test_runtime_process import runtime_process

TOKEN = "fuzz-token-5b1e"


@pytest.mark.timeout(600)  # the generated document gives every body a schema: ~2,000 cases
def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    """Every command operation, fuzzed with up to 100 examples each (plus the coverage and
    stateful phases), never answers with a 5xx. The SSE routes are left out (a valid request
    streams until the server stops); test_event_stream covers their bad inputs."""
    env = {**os.environ, "FUZZ_TOKEN": TOKEN}
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    with runtime_process("--token-env", "FUZZ_TOKEN", "--no-event-stream", env=env) as (proc, url):
        result = subprocess.run(
            [
                st, "run", f"{url}/openapi.json",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--checks", "not_a_server_error",
                "--max-examples", "100",
                "--seed", "20261122",
                "--request-timeout", "10",
                "--report-dir", str(tmp_path),
                "--generation-database", "none",
            ],
            capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
        )  # fmt: skip
        proc.terminate()
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout
