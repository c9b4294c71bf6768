"""The Backend's OpenAPI document is committed and current, and schemathesis fuzzing it
against a real Backend process finds no 5xx."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).parents[3]
COMMITTED = ROOT / "docs" / "api" / "backend-openapi.json"
TOKEN = "fuzz-browser-token-8e41a7c2d9"


def test_the_committed_document_is_current() -> None:
    """docs/api/backend-openapi.json is exactly what the Backend's app generates, without the
    event streams (regenerate with ``python scripts/gen_backend_openapi.py``)."""
    gen: dict[str, Any] = runpy.run_path(str(ROOT / "scripts" / "gen_backend_openapi.py"))
    doc = anyio.run(gen["backend_document"])
    assert not [path for path in doc["paths"] if path.endswith("/events")]
    assert "/api/runtimes" in doc["paths"]
    assert COMMITTED.read_text(encoding="utf-8") == gen["render"](doc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    """Every operation of the committed document, fuzzed with up to 15 examples each (plus
    the coverage phase) against a real Backend, never answers with a 5xx (but the one the
    contract names, see fuzz_hooks.py): no stored registration, hostile id or body breaks
    it. Remotes the fuzzer registers point nowhere useful; they are ``unavailable`` within
    the short deadline, never an error of the registration."""
    pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
    port = _free_port()
    args = [
        sys.executable, "-m", "yoi_workspace_server.cli", "--bind", f"127.0.0.1:{port}",
        "--data-dir", str(tmp_path / "b"), "--token-env", "FUZZ_BROWSER_TOKEN",
        "--remote-deadline-s", "0.3", "--max-remotes", "8",
    ]  # fmt: skip
    env = {**os.environ, "FUZZ_BROWSER_TOKEN": TOKEN}
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.search("listening on", line), line
        st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        result = subprocess.run(
            [
                st, "run", str(COMMITTED), "--url", f"http://127.0.0.1:{port}",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--checks", "no_server_error",
                "--max-examples", "15",
                "--phases", "examples,coverage,fuzzing",
                "--seed", "20261201",
                "--request-timeout", "10",
                "--report-dir", str(tmp_path / "report"),
                "--generation-database", "none",
            ],
            capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_hooks",
                 "PYTHONPATH": str(Path(__file__).parent)},
        )  # fmt: skip
        assert proc.poll() is None, "the Backend exited during the fuzz"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout
