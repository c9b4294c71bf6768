"""The RuntimeRegistry and its control plane, through the Backend's app (in process): live
sources win over local projections, remotes persist across Backend restarts with their
last status, and the registration caps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from . import _asgi as _h

pytestmark = pytest.mark.anyio


EMB, backend, error, register = _h.EMB, _h.backend, _h.error, _h.register


async def test_a_live_source_wins_over_a_local_projection(tmp_path: Path) -> None:
    """A local root of the embedded runtime's id is not shown; registering a remote with a
    local root's id replaces the projection, and removing the remote brings it back."""
    await _h.write_store(tmp_path / "emb", "backend-internal", "hidden")
    await _h.write_store(tmp_path / "shared", "remote-a", "projected")
    stores = (_h.LocalStore(tmp_path / "emb"), _h.LocalStore(tmp_path / "shared"))
    async with _h.remote_runtime("remote-a") as (_, url), backend(local_stores=stores) as (_, c):

        async def kinds() -> dict[str, str]:
            runtimes = (await c.get("/api/runtimes")).json()["runtimes"]
            return {r["runtime_id"]: r["kind"] for r in runtimes}

        assert await kinds() == {
            "backend-internal": "embedded",
            "remote-a": "local_compatibility",
        }
        assert (await register(c, "remote-a", url)).status_code == 201
        assert (await kinds())["remote-a"] == "remote"
        assert (await c.get("/api/runtimes/remote-a/workers")).json()["workers"] == []
        assert (await c.delete("/api/runtimes/remote-a")).status_code == 200
        assert (await kinds())["remote-a"] == "local_compatibility"
        rows = (await c.get("/api/runtimes/remote-a/workers")).json()["workers"]
        assert [r["name"] for r in rows] == ["old"]


async def test_remotes_persist_with_their_last_status(tmp_path: Path) -> None:
    """A remote registered through the API is in the control plane (0600): a new Backend on
    the same data dir has it again, first with its last known status, and the embedded
    Runtime's Workers as they were (its fs store under the data dir); a stored row that
    cannot be loaded (a bad id) is skipped without stopping the start; a removed remote is
    gone for good."""
    data = tmp_path / "data"
    async with _h.remote_runtime("remote-a") as (_, url):
        async with backend(data_dir=data) as (_, c):
            assert (await register(c, "remote-a", url)).status_code == 201
            wid = (await c.post(f"{EMB}/workers", json={})).json()["worker"]["worker_id"]
            assert (await c.post(f"{EMB}/workers/{wid}/stop", json={})).status_code == 200
        assert (data / "backend.sqlite3").stat().st_mode & 0o777 == 0o600
        db = sqlite3.connect(data / "backend.sqlite3")
        db.execute(
            "INSERT INTO remote_runtimes VALUES ('bad id', 'x', 'http://127.0.0.1:1', 't', 'z')"
        )
        db.commit()
        db.close()
        async with backend(data_dir=data) as (b, c):
            ids = [s.runtime_id for s in b.registry.sources()]
            assert ids == ["backend-internal", "remote-a"]
            info = (await c.get("/api/runtimes/remote-a")).json()["runtime"]
            assert info["status"] == "running"
            worker = (await c.get(f"{EMB}/workers/{wid}")).json()["worker"]
            assert worker["status"] == "stopped"
            assert (await c.delete("/api/runtimes/remote-a")).status_code == 200
        async with backend(data_dir=data) as (b, c):
            assert [s.runtime_id for s in b.registry.sources()] == ["backend-internal"]


async def test_registrations_are_capped_and_checked() -> None:
    """Past ``max_remotes`` a registration is 409 too_many_runtimes; a bad id or URL is 400
    invalid_input; none of them is stored."""
    limits = _h.RemoteLimits(max_remotes=1)
    async with (
        _h.remote_runtime("remote-a") as (_, url),
        backend(remote_limits=limits) as (
            b,
            c,
        ),
    ):
        assert (await register(c, "remote-a", url)).status_code == 201
        error(await register(c, "remote-b", url), 409, "too_many_runtimes")
        error(await register(c, "bad id", url), 400, "invalid_input")
        error(await register(c, "remote-c", "ftp://h"), 400, "invalid_input")
        assert [s.runtime_id for s in b.registry.sources()] == ["backend-internal", "remote-a"]
        assert [r.runtime_id for r in b.control.remotes()] == ["remote-a"]
