"""The yoi command line."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from yoi.cli import main


def _yoi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yoi.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_streams_a_turn_and_prints_the_transcript() -> None:
    """`yoi demo` creates a Worker, prints each echoed delta as it streams, the turn's end,
    and the transcript with the user input and the echoed reply."""
    result = _yoi("demo", "--text", "alpha beta gamma", "--delay-ms", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    deltas = [line for line in lines if "output_delta" in line]
    assert len(deltas) == 3
    assert any("turn_completed" in line for line in lines)
    assert lines[-2:] == ["  #1 user      alpha beta gamma", "  #2 assistant alpha beta gamma"]


def test_help_starts_nothing() -> None:
    """`yoi --help` and `yoi demo --help` print usage and exit 0."""
    for args in (["--help"], ["demo", "--help"]):
        result = _yoi(*args)
        assert result.returncode == 0
        assert "usage: yoi" in result.stdout.lower()


def test_bad_demo_arguments_exit_2() -> None:
    """A blank --text or a negative delay exits 2 with a one-line reason."""
    assert main(["demo", "--text", "  "]) == 2
    assert main(["demo", "--delay-ms", "-1"]) == 2
    result = _yoi("demo", "--delay-ms", "soon")
    assert result.returncode == 2


def test_the_readme_main_job_example_talks_to_yoi_up(tmp_path: Path) -> None:
    """`yoi up` prints its URL and console link, and the README's example (pointed at that
    URL, run where `.yoi` is) reads the generated token, creates a Worker, streams its echo
    turn through the Backend and reads its transcript."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    match = re.search(r"do; this one is Python.*?```python\n(.*?)```", readme, re.S)
    assert match, "the README lost its main-job example"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    example = match.group(1).replace("127.0.0.1:8700", f"127.0.0.1:{port}")
    (tmp_path / "example.py").write_text(example, encoding="utf-8")
    args = ["up", "--bind", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / ".yoi")]
    server = subprocess.Popen(
        [sys.executable, "-m", "yoi.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert f"http://127.0.0.1:{port}" in server.stdout.readline()
        token = (tmp_path / ".yoi" / "backend.token").read_text().strip()
        assert server.stdout.readline().strip().endswith(f"http://127.0.0.1:{port}/#token={token}")
        result = subprocess.run(
            [sys.executable, str(tmp_path / "example.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=tmp_path,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()
    lines = result.stdout.splitlines()
    assert lines[0].startswith("input_accepted")
    assert [line.split()[0] for line in lines[:-1]][-1] == "turn_completed"
    assert "'content': 'hello there'" in lines[-1]
