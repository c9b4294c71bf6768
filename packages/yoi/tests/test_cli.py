"""The yoi command line."""

from __future__ import annotations

import subprocess
import sys

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
        assert "usage: yoi" in result.stdout


def test_bad_demo_arguments_exit_2() -> None:
    """A blank --text or a negative delay exits 2 with a one-line reason."""
    assert main(["demo", "--text", "  "]) == 2
    assert main(["demo", "--delay-ms", "-1"]) == 2
    result = _yoi("demo", "--delay-ms", "soon")
    assert result.returncode == 2
