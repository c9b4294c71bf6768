"""The fs store's root is private and guarded: a lock that survives deletion of runtime.lock,
0700/0600 modes (or configured ones), no followed symlinks, no unsafe root, lost segments
never reuse cursors, and a root from another version is a typed refusal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")

from worker_runtime import CursorUnknown, InvalidInput, Runtime, RuntimeUnavailable, StoreCorrupt
from worker_runtime.store.fs import FsRuntimeStore

pytestmark = pytest.mark.anyio

CLI = [sys.executable, "-m", "worker_runtime.cli"]


def rt_on(root: Path) -> Runtime:
    return Runtime(runtime_id="safe", store=FsRuntimeStore(root))


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_deleting_runtime_lock_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    """With runtime.lock deleted under a live Runtime, a second open of the root is refused
    with store_locked, and the first Runtime keeps working."""
    root = tmp_path / "store"
    async with rt_on(root) as first:
        w = await first.create_worker()
        (root / "runtime.lock").unlink()
        with pytest.raises(RuntimeUnavailable) as refused:
            async with rt_on(root):
                pass
        assert refused.value.details["reason"] == "store_locked"
        await first.send_input(w.worker_ref, {"content": "still mine", "kind": "system"})


async def test_files_are_0600_and_directories_0700_under_umask_022(
    tmp_path: Path, umask_022: None
) -> None:
    """Under umask 022 every file the store writes is 0600 and every directory 0700."""
    root = tmp_path / "store"
    async with rt_on(root) as rt:
        w = await rt.create_worker()
        await rt.send_input(w.worker_ref, {"content": "private", "kind": "system"})
    seen = 0
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path.relative_to(tmp_path), oct(mode))
        seen += 1
    assert seen > 6


async def test_group_modes_apply_to_every_file_and_directory(
    tmp_path: Path, umask_022: None
) -> None:
    """With file_mode 0640 and dir_mode 0750 (``--store-mode group``) every file the store
    writes, a checkpoint and a restart included, is 0640 and every directory 0750."""
    root = tmp_path / "store"
    for _ in range(2):
        store = FsRuntimeStore(root, file_mode=0o640, dir_mode=0o750)
        async with Runtime(runtime_id="safe", store=store) as rt:
            w = await rt.create_worker()
            await rt.send_input(w.worker_ref, {"content": "shared", "kind": "system"})
    seen = 0
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o750 if path.is_dir() else 0o640), (path.relative_to(tmp_path), oct(mode))
        seen += 1
    assert seen > 8


@pytest.mark.parametrize(
    ("file_mode", "dir_mode"),
    [
        (0o666, 0o700),  # world-writable files
        (0o600, 0o777),  # a world-writable root
        (0o620, 0o700),  # group-writable files
        (0o600, 0o770),  # a group-writable root
        (0o700, 0o700),  # executable files
        (0o400, 0o700),  # files the owner cannot write
        (0o600, 0o500),  # a root the owner cannot write
        (0o1600, 0o700),  # bits beyond the permissions
    ],
)
def test_modes_that_let_others_write_are_refused(file_mode: int, dir_mode: int) -> None:
    """A file or directory mode that lets anyone but the owner write, or locks the owner out,
    is refused with invalid_input before anything is created."""
    with pytest.raises(InvalidInput):
        FsRuntimeStore("/nonexistent/never-created", file_mode=file_mode, dir_mode=dir_mode)
    assert not Path("/nonexistent/never-created").exists()


def test_the_cli_store_mode_flag(tmp_path: Path, umask_022: None) -> None:
    """``yoi-runtime --store fs --store-mode group`` creates a 0750 root with 0640 files;
    ``--store-mode`` without the fs store, or with an unknown name, exits 2 in one line."""
    root = tmp_path / "store"
    token = tmp_path / "token"
    token.write_text("t" * 32)
    proc = subprocess.Popen(
        [
            *CLI,
            *("--bind", "127.0.0.1:0", "--store", "fs", "--data-dir", str(root)),
            *("--store-mode", "group", "--token-file", str(token)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert stat.S_IMODE(root.stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "runtime.json").stat().st_mode) == 0o640
    for bad in (
        ["--store-mode", "group"],
        ["--store", "fs", "--data-dir", str(root), "--store-mode", "world"],
    ):
        result = subprocess.run(
            [*CLI, *bad], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("name", ["events", "workers", "runtime.lock", "runtime.json"])
async def test_a_planted_symlink_in_the_root_is_refused_and_not_followed(
    name: str, tmp_path: Path
) -> None:
    """A root whose events/, workers/, runtime.lock or runtime.json is a symlink is refused
    with a clear store_unsafe error naming no path, and the link's target is untouched."""
    root = tmp_path / "store"
    async with rt_on(root):
        pass
    target = tmp_path / "elsewhere"
    original = root / name
    if original.is_dir():
        shutil.move(original, target)
    else:
        target.write_text("precious\n")
        original.unlink()
    original.symlink_to(target)
    with pytest.raises(RuntimeUnavailable) as refused:
        async with rt_on(root):
            pass
    assert refused.value.details["reason"] == "store_unsafe"
    assert "symlink" in refused.value.message
    assert str(tmp_path) not in refused.value.message
    if target.is_file():
        assert target.read_text() == "precious\n"


async def test_a_group_or_world_writable_root_is_refused(tmp_path: Path) -> None:
    """A root others may write to is refused until it is chmod 700."""
    root = tmp_path / "store"
    async with rt_on(root):
        pass
    root.chmod(0o777)
    with pytest.raises(RuntimeUnavailable, match="chmod 700"):
        async with rt_on(root):
            pass
    root.chmod(0o700)
    async with rt_on(root):
        pass


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
async def test_a_root_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A root owned by another user is refused with store_unsafe."""
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    os.chown(root, 54321, -1)
    with pytest.raises(RuntimeUnavailable, match="another user"):
        async with rt_on(root):
            pass


async def test_lost_segments_start_a_new_incarnation_and_never_reuse_cursors(
    tmp_path: Path,
) -> None:
    """When events/ is lost but the store's records survive, the open reports store.log_lost,
    starts a new incarnation (old cursors are cursor_unknown), and new positions are past
    every recorded one; the transcripts are still there."""
    root = tmp_path / "store"
    async with rt_on(root) as rt:
        w = await rt.create_worker()
        ack = await rt.send_input(w.worker_ref, {"content": "before the loss", "kind": "system"})
        old = (await rt.summary()).incarnation
    shutil.rmtree(root / "events")
    async with rt_on(root) as rt:
        info = await rt.summary()
        assert info.incarnation != old
        codes = [d.code for d in await rt.diagnostics()]
        assert "store.log_lost" in codes
        with pytest.raises(CursorUnknown):
            await rt.read_events(cursor=ack.cursor)
        again = await rt.send_input(w.worker_ref, {"content": "after", "kind": "system"})
        assert again.cursor != ack.cursor
        page = await rt.read_transcript(w.worker_ref)
        assert [i.content for i in page.items] == ["before the loss", "after"]
    async with rt_on(root) as rt:  # the new incarnation is kept, and nothing is lost again
        assert (await rt.summary()).incarnation == info.incarnation
        assert "store.log_lost" not in [d.code for d in await rt.diagnostics()]


async def test_a_root_written_by_another_version_is_a_typed_refusal(tmp_path: Path) -> None:
    """A runtime.json of another schema_version fails the open with store_corrupt, reason
    foreign_version, and a message naming the versions but no path."""
    root = tmp_path / "store"
    async with rt_on(root):
        pass
    record = json.loads((root / "runtime.json").read_text())
    record["schema_version"] = 99
    (root / "runtime.json").write_text(json.dumps(record))
    with pytest.raises(StoreCorrupt) as refused:
        async with rt_on(root):
            pass
    assert refused.value.details["reason"] == "foreign_version"
    assert "99" in refused.value.message
    assert str(tmp_path) not in refused.value.message
