"""The README's library example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[3] / "README.md"


def test_the_readme_library_example_streams_a_turn(tmp_path: Path) -> None:
    """The README's ten-line example runs and prints the events of one echo turn."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## Ten lines with the library\n\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its library example"
    script = tmp_path / "example.py"
    script.write_text(match.group(1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    kinds = [line.split()[0] for line in result.stdout.splitlines()]
    assert kinds[0] == "input_accepted"
    assert kinds[-1] == "turn_completed"
    assert "output_delta" in kinds
