"""Fail on trailing whitespace, a missing final newline, or tabs in indentation, in every file
git tracks or would track (the equivalent of `git diff --check`, for the whole tree)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SKIP_SUFFIXES = {".lock", ".png", ".jpg", ".gif", ".gguf", ".whl"}


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout
    return [Path(p) for p in out.decode().split("\0") if p]


def problems(path: Path) -> list[str]:
    if path.suffix in SKIP_SUFFIXES or not path.is_file():
        return []
    data = path.read_bytes()
    if not data or b"\0" in data:
        return []
    found = []
    if not data.endswith(b"\n"):
        found.append(f"{path}: no newline at end of file")
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.rstrip(b"\r") != line.rstrip(b"\r").rstrip(b" \t"):
            found.append(f"{path}:{number}: trailing whitespace")
    return found


def main() -> int:
    found = [p for path in tracked_files() for p in problems(path)]
    for problem in found:
        print(problem)
    if found:
        print(f"{len(found)} whitespace problem(s)")
        return 1
    print("whitespace ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
