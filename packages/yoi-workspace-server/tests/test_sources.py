"""Each Backend source through the Backend's ASGI app (in process, ``httpx.ASGITransport``):
the embedded Runtime, a remote ``yoi-runtime`` (served on a real loopback socket) and a
read-only local store root."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from . import _asgi as _h

pytestmark = pytest.mark.anyio


EMB, backend, error, register = _h.EMB, _h.backend, _h.error, _h.register


async def _idle(client: Any, path: str) -> None:
    with anyio.fail_after(10):
        while (await client.get(path)).json()["worker"]["status"] != "idle":
            await anyio.sleep(0.01)


async def test_the_embedded_source() -> None:
    """The embedded Runtime is listed running with every capability and ``embedded.``
    diagnostics; every command works through it with Backend cursors (``b1.``), and its
    errors pass through 1:1 (worker_not_found, worker_stopped, invalid_input); it cannot be
    removed."""
    async with backend() as (_, c):
        (info,) = (await c.get("/api/runtimes")).json()["runtimes"]
        assert (info["runtime_id"], info["kind"], info["status"]) == (
            "backend-internal",
            "embedded",
            "running",
        )
        assert all(info["capabilities"].values())
        assert info["implementation"] == "worker_runtime.Runtime (memory store)"
        assert all(d["code"].startswith("embedded.") for d in info["diagnostics"])
        assert info["counts"] == {"workers": 0, "idle": 0, "running": 0, "stopped": 0}
        created = await c.post(f"{EMB}/workers", json={"name": "emb"})
        assert created.status_code == 201
        worker = created.json()["worker"]
        wid = worker["worker_id"]
        assert worker["last_cursor"].startswith("b1.")
        assert worker["overview"]["last_cursor"].startswith("b1.")
        assert (await c.get(EMB)).json()["runtime"]["counts"]["workers"] == 1
        ack = (await c.post(f"{EMB}/workers/{wid}/input", json={"content": "hi emb"})).json()
        assert ack["ack"]["cursor"].startswith("b1.")
        assert ack["ack"]["turn_id"]
        await _idle(c, f"{EMB}/workers/{wid}")
        page = (await c.get(f"{EMB}/workers/{wid}/transcript")).json()["transcript"]
        assert [i["content"] for i in page["items"]] == ["hi emb", "hi emb"]
        assert page["cursor"].startswith("b1.")
        assert all(i["cursor"].startswith("b1.") for i in page["items"])
        second = (await c.get(f"{EMB}/workers/{wid}/transcript?start=1&limit=1")).json()
        assert [i["sequence"] for i in second["transcript"]["items"]] == [2]
        rows = (await c.get(f"{EMB}/workers")).json()["workers"]
        assert [(r["runtime_id"], r["worker_id"]) for r in rows] == [("backend-internal", wid)]
        cancel = await c.post(f"{EMB}/workers/{wid}/cancel", json={})
        assert cancel.status_code == 200
        assert cancel.json()["ack"]["cursor"].startswith("b1.")
        stop = await c.post(f"{EMB}/workers/{wid}/stop", json={})
        assert stop.status_code == 200
        assert stop.json()["ack"]["status"] == "stopped"
        error(await c.post(f"{EMB}/workers/{wid}/input", json={"content": "x"}), 409,
              "worker_stopped")  # fmt: skip
        error(await c.delete(EMB), 501, "unsupported_operation")
        error(await c.get("/api/runtimes/nope/workers"), 404, "runtime_not_found")
        error(await c.get(f"{EMB}/workers/nope"), 404, "worker_not_found")
        for bad in ("..%2Fx", "%00", "ü" * 300):
            assert (await c.get(f"/api/runtimes/{bad}/workers")).status_code in (400, 404)
            assert (await c.get(f"{EMB}/workers/{bad}")).status_code in (400, 404)
        json_type = {"content-type": "application/json"}
        error(await c.post(f"{EMB}/workers", content=b"{nope", headers=json_type), 400,
              "invalid_input")  # fmt: skip
        error(await c.get(f"{EMB}/workers/{wid}/events", params={"cursor": "zz"}), 400,
              "cursor_malformed")  # fmt: skip
        profiles = (await c.get(f"{EMB}/profiles")).json()["profiles"]
        assert any(p["is_default"] for p in profiles)


async def test_a_remote_source(tmp_path: Path) -> None:
    """A remote registers ``running`` with its counts (a second registration of its id is
    runtime_exists); every command reaches it with Backend cursors and its errors pass
    through 1:1 with their details (worker_busy); ``/api/workers`` lists both sources; once
    it is gone its commands are 503 with the reason and it is a diagnostic row of
    ``/api/workers`` while the embedded source keeps answering; removing it makes it
    runtime_not_found; no response carries its token or address."""
    slow = _h.Limits(shutdown_grace_s=0.2)
    remote = _h.Runtime(runtime_id="remote-a", limits=slow, profiles=_slow_profiles())
    async with remote as rt, backend() as (_, c):
        assert (await c.post(f"{EMB}/workers", json={})).status_code == 201
        async with _h.served(rt) as url:
            added = await register(c, "remote-a", url)
            assert added.status_code == 201, added.text
            info = added.json()["runtime"]
            assert (info["kind"], info["status"]) == ("remote", "running")
            assert info["counts"]["workers"] == 0
            assert info["implementation"] == "yoi-runtime (HTTP)"
            error(await register(c, "remote-a", url), 409, "runtime_exists")
            rbase = "/api/runtimes/remote-a"
            body = {"profile": {"kind": "named", "name": "slow"}}
            made = (await c.post(f"{rbase}/workers", json=body)).json()["worker"]
            rwid = made["worker_id"]
            assert made["last_cursor"].startswith("b1.")
            sent = await c.post(
                f"{rbase}/workers/{rwid}/input", json={"content": "a b c d e f g h i j"}
            )
            assert sent.status_code == 200
            busy = error(
                await c.post(f"{rbase}/workers/{rwid}/input", json={"content": "d"}),
                409,
                "worker_busy",
            )
            assert busy["details"]["active_turn_id"]
            await _idle(c, f"{rbase}/workers/{rwid}")
            page = (await c.get(f"{rbase}/workers/{rwid}/transcript")).json()
            assert page["transcript"]["worker_ref"]["runtime_id"] == "remote-a"
            rows = (await c.get("/api/workers")).json()
            ids = {r["runtime_id"] for r in rows["workers"]}
            assert ids == {"backend-internal", "remote-a"}
            assert rows["diagnostics"] == []
        # The remote's server is gone.
        down = error(await c.get(f"{rbase}/workers"), 503, "runtime_unavailable")
        assert down["details"]["reason"] in ("unreachable", "timeout")
        with anyio.fail_after(10):
            while (await c.get(rbase)).json()["runtime"]["status"] != "unavailable":
                await anyio.sleep(0.05)
        everything = (await c.get("/api/workers")).json()
        assert {r["runtime_id"] for r in everything["workers"]} == {"backend-internal"}
        (row,) = everything["diagnostics"]
        assert (row["runtime_id"], row["code"]) == ("remote-a", "runtime_unavailable")
        assert row["reason"] in ("unreachable", "timeout")
        assert (await c.get(f"{EMB}/workers")).status_code == 200
        assert (await c.delete(rbase)).json() == {"removed": "remote-a"}
        error(await c.get(rbase), 404, "runtime_not_found")
        for text in c.seen:  # no response carries the remote's token or address
            assert _h.RUNTIME_TOKEN not in text
            assert url.removeprefix("http://") not in text


def _slow_profiles() -> Any:
    from worker_runtime import Profile, Profiles

    return Profiles([Profile(name="slow", provider="echo", chunk_delay_ms=200)])


async def test_a_remote_that_refuses_the_token() -> None:
    """A remote that refuses the Backend's token registers ``unavailable`` (auth_failed), its
    commands are 503 runtime_unavailable with that reason (never the browser's 401), and it
    can be removed."""
    async with _h.remote_runtime() as (_, url), backend() as (_, c):
        added = await register(c, "remote-bad", url, token="wrong-token-0123456789")
        assert added.status_code == 201
        info = added.json()["runtime"]
        assert info["status"] == "unavailable"
        assert [d["code"] for d in info["diagnostics"]] == ["remote.auth_failed"]
        body = error(await c.get("/api/runtimes/remote-bad/workers"), 503, "runtime_unavailable")
        assert body["details"]["reason"] == "auth_failed"
        assert (await c.delete("/api/runtimes/remote-bad")).status_code == 200


async def test_a_local_source(tmp_path: Path) -> None:
    """A local store root is a ``local_compatibility`` source: ``stopped`` (no writer), read
    only (capabilities, an ``local.read_only`` diagnostic), its Workers listed, detailed and
    paged with Backend cursors; every command and its event stream are 501
    unsupported_operation; a root that is no store is not shown."""
    root = tmp_path / "old"
    wid = await _h.write_store(root, "old-rt", "left behind")
    (tmp_path / "empty").mkdir()
    stores = (_h.LocalStore(root, "Old"), _h.LocalStore(tmp_path / "empty"))
    async with backend(local_stores=stores) as (_, c):
        runtimes = (await c.get("/api/runtimes")).json()["runtimes"]
        assert [r["runtime_id"] for r in runtimes] == ["backend-internal", "old-rt"]
        info = runtimes[1]
        assert (info["kind"], info["status"], info["display_name"]) == (
            "local_compatibility",
            "stopped",
            "Old",
        )
        assert info["capabilities"] == {
            "can_create": False,
            "can_input": False,
            "can_stop": False,
            "can_cancel": False,
            "can_read_transcript": True,
            "can_stream_events": False,
        }
        assert [d["code"] for d in info["diagnostics"]] == ["local.read_only"]
        assert info["counts"]["workers"] == 1
        lbase = f"/api/runtimes/old-rt/workers/{wid}"
        detail = (await c.get(lbase)).json()["worker"]
        assert detail["name"] == "old"
        assert detail["last_cursor"].startswith("b1.")
        page = (await c.get(f"{lbase}/transcript")).json()["transcript"]
        assert [i["content"] for i in page["items"]] == ["left behind", "left behind"]
        assert page["cursor"].startswith("b1.")
        rows = (await c.get("/api/workers")).json()["workers"]
        assert [r["runtime_id"] for r in rows] == ["old-rt"]
        for method, path, body in (
            ("POST", "/api/runtimes/old-rt/workers", {}),
            ("POST", f"{lbase}/input", {"content": "no"}),
            ("POST", f"{lbase}/stop", {}),
            ("POST", f"{lbase}/cancel", {}),
            ("GET", "/api/runtimes/old-rt/profiles", None),
            ("GET", f"{lbase}/events", None),
            ("DELETE", "/api/runtimes/old-rt", None),
        ):
            response = await c.request(method, path, json=body)
            error(response, 501, "unsupported_operation")


async def test_a_live_local_store_is_followed(tmp_path: Path) -> None:
    """A root a live Runtime appends to is ``running`` (``local.live_writer``) and every read
    follows it; its commands stay 501 and its reads refuse bad paging with invalid_input or
    worker_not_found."""
    root = tmp_path / "live"
    store = _h.FsRuntimeStore(root, fsync="never")
    async with _h.Runtime(runtime_id="live-rt", store=store) as rt:
        wid = (await rt.create_worker()).worker_id
        async with backend(local_stores=(_h.LocalStore(root),)) as (_, c):
            info = (await c.get("/api/runtimes/live-rt")).json()["runtime"]
            assert info["status"] == "running"
            assert "local.live_writer" in [d["code"] for d in info["diagnostics"]]
            lbase = f"/api/runtimes/live-rt/workers/{wid}"
            for i in range(5):
                await rt.send_input(rt.ref(wid), _h.InputRequest(content=f"t {i}"))
                with anyio.fail_after(10):
                    while (await rt.get_worker(rt.ref(wid))).status != "idle":
                        await anyio.sleep(0.01)
            with anyio.fail_after(10):
                while (await c.get(lbase)).json()["worker"]["transcript_len"] != 10:
                    await anyio.sleep(0.05)
            page = (await c.get(f"{lbase}/transcript", params={"start": 8})).json()
            assert [i["content"] for i in page["transcript"]["items"]] == ["t 4", "t 4"]
            error(await c.post(f"{lbase}/input", json={"content": "no"}), 501,
                  "unsupported_operation")  # fmt: skip
            error(await c.get(f"{lbase}/transcript", params={"start": -1}), 400, "invalid_input")
            error(await c.get("/api/runtimes/live-rt/workers", params={"after": "nope"}), 400,
                  "invalid_input")  # fmt: skip
            error(await c.get("/api/runtimes/live-rt/workers/nope"), 404, "worker_not_found")


async def test_the_same_worker_id_in_two_runtimes_routes_apart(tmp_path: Path) -> None:
    """A local root and a live remote (a copy of it under another runtime_id) hold the same
    worker_id: input reaches the remote only, ``/api/workers`` lists both rows, and one
    runtime's cursor on the other's route is cursor_unknown; hostile runtime ids and a dead
    remote are refused or shown unavailable, and no token, URL or store path appears in any
    response."""
    old, twin = tmp_path / "old", tmp_path / "twin"
    wid = await _h.write_store(old, "old-rt", "from the old runtime")
    shutil.copytree(old, twin)
    record = json.loads((twin / "runtime.json").read_text())
    (twin / "runtime.json").write_text(json.dumps({**record, "runtime_id": "twin-rt"}))
    dead_url = f"http://127.0.0.1:{_free_port()}"
    store = _h.FsRuntimeStore(twin, fsync="never")
    twin_rt = _h.Runtime(runtime_id="twin-rt", store=store)
    local = (_h.LocalStore(old),)
    async with twin_rt as rt, _h.served(rt) as twin_url, backend(local_stores=local) as (_, c):
        assert (await register(c, "twin-rt", twin_url)).status_code == 201
        obase, tbase = "/api/runtimes/old-rt", "/api/runtimes/twin-rt"
        detail = (await c.get(f"{obase}/workers/{wid}")).json()["worker"]
        sent = await c.post(f"{tbase}/workers/{wid}/input", json={"content": "twin only"})
        assert sent.status_code == 200, sent.text
        with anyio.fail_after(10):
            while (await c.get(f"{tbase}/workers/{wid}")).json()["worker"]["transcript_len"] != 4:
                await anyio.sleep(0.05)
        assert (await c.get(f"{obase}/workers/{wid}")).json()["worker"]["transcript_len"] == 2
        rows = (await c.get("/api/workers")).json()["workers"]
        assert sorted(r["runtime_id"] for r in rows if r["worker_id"] == wid) == [
            "old-rt",
            "twin-rt",
        ]
        wrong = {"cursor": detail["last_cursor"]}  # old-rt's cursor
        error(await c.get(f"{tbase}/workers/{wid}/events", params=wrong), 400,
              "cursor_unknown")  # fmt: skip
        for hostile in ("../x", "a\x00b", "名前", "x" * 300, ""):
            bad = {"runtime_id": hostile, "base_url": twin_url}
            error(await c.post("/api/runtimes", json=bad), 400, "invalid_input")
        dead = await register(c, "dead-rt", dead_url, token=DEAD_TOKEN)
        assert dead.json()["runtime"]["status"] == "unavailable"
        error(await c.get("/api/runtimes/dead-rt/workers"), 503, "runtime_unavailable")
        error(await c.post("/api/runtimes/dead-rt/workers", json={}), 503,
              "runtime_unavailable")  # fmt: skip
        assert (await c.get("/api/runtimes")).status_code == 200
        diagnostics = (await c.get("/api/workers")).json()["diagnostics"]
        assert [d["runtime_id"] for d in diagnostics] == ["dead-rt"]
        seen = c.seen
    secrets = [_h.RUNTIME_TOKEN, DEAD_TOKEN, _h.TOKEN, str(tmp_path), twin_url, dead_url]
    for text in seen:
        for secret in secrets:
            assert secret not in text, secret


DEAD_TOKEN = "dead-runtime-secret-token-99"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
