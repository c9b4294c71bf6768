"""The fs store under descriptor pressure: no free descriptor while opening a file is
transient, not a failed write. Run in a child process with a low RLIMIT_NOFILE."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

CHILD = textwrap.dedent(
    """
    import os, resource, sys, threading, time
    import anyio
    from worker_runtime import Runtime
    from worker_runtime.store.fs import FsRuntimeStore

    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    async def main() -> None:
        runtime = Runtime(runtime_id="fds", store=FsRuntimeStore(sys.argv[1]))
        async with runtime:
            first = await runtime.create_worker({})
            hogs = []
            while True:  # use up every descriptor, as a flood of connections would
                try:
                    hogs.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    break
            def release() -> None:
                time.sleep(0.1)
                for fd in hogs[-8:]:
                    os.close(fd)
            threading.Thread(target=release).start()
            second = await runtime.create_worker({})
            await runtime.send_input(second.worker_ref, {"content": "after the pressure"})
            for fd in hogs[:-8]:
                os.close(fd)
            await runtime.send_input(first.worker_ref, {"content": "still writable"})
            print("ok", flush=True)

    anyio.run(main)
    """
)


def test_running_out_of_descriptors_while_opening_is_retried_not_a_fail_stop(
    tmp_path: Path,
) -> None:
    """With every descriptor in use for 0.1 s, a Worker created meanwhile is written once
    descriptors free up, and the store keeps accepting writes (no permanent 503)."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
