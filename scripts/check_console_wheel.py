"""The console is served from the installed wheel: start ``yoi up`` from a venv that has only
the wheels, then fetch the app shell and every ``console/`` file the wheel ships.

Usage: python scripts/check_console_wheel.py VENV_BIN WHEEL (run by scripts/check)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path


def main() -> int:
    bin_dir, wheel = Path(sys.argv[1]), Path(sys.argv[2])
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.split("yoi_workspace_server/", 1)[1]: archive.read(name)
            for name in archive.namelist()
            if name.startswith("yoi_workspace_server/console/")
        }
    if "console/index.html" not in shipped or "console/app.js" not in shipped:
        print(f"the wheel ships no console: {sorted(shipped)}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [str(bin_dir / "yoi"), "up", "--bind", "127.0.0.1:0", "--data-dir", data],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            found = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
            if found is None:
                print("yoi up did not start", file=sys.stderr)
                return 1
            base = found.group(0)
            for path, expected in [("/", shipped["console/index.html"])] + [
                (f"/{name}", body) for name, body in shipped.items()
            ]:
                with urllib.request.urlopen(base + path, timeout=10) as response:
                    if response.read() != expected:
                        print(f"{path} is not the wheel's file", file=sys.stderr)
                        return 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    print(f"console served from the wheel: {len(shipped)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
