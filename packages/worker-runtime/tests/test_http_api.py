"""The REST command API, in process: every endpoint and every error code of contract §6."""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
httpx = pytest.importorskip("httpx")

from worker_runtime import Limits, Profile, Profiles, Runtime  # noqa: E402
from worker_runtime.http import HttpSettings, create_app  # noqa: E402
from worker_runtime.testing import ScriptedBackend, ScriptedTurn  # noqa: E402

pytestmark = pytest.mark.anyio

TOKEN = "test-token-abc123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HTTP_SRC = Path(__import__("worker_runtime.http").http.__file__).parent


@asynccontextmanager
async def client(**runtime: Any) -> AsyncIterator[httpx.AsyncClient]:
    backend = ScriptedBackend(default=ScriptedTurn.hang_after("partial "))
    async with Runtime(
        runtime_id="http-rt",
        profiles=Profiles([Profile(name="hang", provider="scripted")]),
        backends={"scripted": backend},
        limits=Limits(shutdown_grace_s=0.1, max_transcript_items=50),
        **runtime,
    ) as rt:
        app = create_app(rt, HttpSettings(token=TOKEN))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://runtime", headers=AUTH
        ) as c:
            yield c


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


async def test_healthz_is_open_and_everything_else_needs_the_token() -> None:
    """/healthz answers without a token; every other route, /openapi.json included, is 401
    without one or with a wrong one."""
    async with client() as c:
        assert (await c.get("/healthz", headers={"Authorization": ""})).json() == {"status": "ok"}
        for path in ("/v1/runtime", "/v1/workers", "/openapi.json", "/v1/nope", "/docs"):
            for headers in (
                {"Authorization": ""},
                {"Authorization": "Bearer wrong"},
                {"Authorization": TOKEN},
                {"Authorization": f"bearer {TOKEN}x"},
            ):
                response = await c.get(path, headers=headers)
                error_of(response, 401, "unauthorized")
                assert TOKEN not in response.text


async def test_auth_runs_before_the_body_is_read() -> None:
    """An unauthenticated request with a huge body is refused as 401, not 413."""
    async with client() as c:
        response = await c.post(
            "/v1/workers", content=b"x" * (10 * 1024 * 1024), headers={"Authorization": ""}
        )
        error_of(response, 401, "unauthorized")


async def test_runtime_summary_and_diagnostics() -> None:
    """GET /v1/runtime returns the summary shape; GET /v1/diagnostics lists diagnostics."""
    async with client() as c:
        runtime = (await c.get("/v1/runtime")).json()["runtime"]
        assert runtime["runtime_id"] == "http-rt"
        assert set(runtime) >= {
            "runtime_id", "display_name", "status", "store", "incarnation", "capabilities",
            "limits", "counts", "diagnostics_count", "started_at",
        }  # fmt: skip
        diagnostics = (await c.get("/v1/diagnostics")).json()["diagnostics"]
        assert [d["code"] for d in diagnostics] == ["profile.default_echo"]
        error_of(await c.get("/v1/diagnostics", params={"limit": 5000}), 400, "limit_too_large")


async def test_worker_lifecycle_over_rest() -> None:
    """Create (201), list, detail, input, transcript, cancel and stop work end to end with
    the contract's shapes."""
    async with client() as c:
        created = await c.post(
            "/v1/workers", json={"name": "rest", "initial_input": {"content": "hi"}}
        )
        assert created.status_code == 201
        worker = created.json()["worker"]
        wid = worker["worker_id"]
        assert worker["worker_ref"] == {"runtime_id": "http-rt", "worker_id": wid}
        assert worker["profile_info"] == {"name": "echo", "provider": "echo", "model": "echo"}
        listed = (await c.get("/v1/workers")).json()
        assert [w["worker_id"] for w in listed["workers"]] == [wid]
        assert listed["next_after"] is None
        ack = (
            await c.post(f"/v1/workers/{wid}/input", json={"content": "more", "kind": "system"})
        ).json()["ack"]
        assert set(ack) == {
            "worker_ref",
            "turn_id",
            "queued",
            "transcript_sequence",
            "cursor",
            "status",
        }
        page = (
            await c.get(f"/v1/workers/{wid}/transcript", params={"start": 0, "limit": 10})
        ).json()
        transcript = page["transcript"]
        assert transcript["total_items"] >= 2
        assert transcript["items"][0]["content"] == "hi"
        cancel = (await c.post(f"/v1/workers/{wid}/cancel", json={})).json()["ack"]
        assert set(cancel) == {"worker_ref", "status", "cancelled_turn_id", "cursor"}
        stop = (await c.post(f"/v1/workers/{wid}/stop")).json()["ack"]
        assert stop["status"] == "stopped"
        assert (await c.post(f"/v1/workers/{wid}/stop", json={"reason": "again"})).json()[
            "ack"
        ] == stop
        detail = (await c.get(f"/v1/workers/{wid}")).json()["worker"]
        assert detail["status"] == "stopped"
        assert "overview" in detail


async def test_every_command_error_code_over_rest() -> None:
    """worker_busy (naming the turn), worker_stopped, idempotency_conflict, worker_not_found,
    profile_not_found, unsupported_operation and limit_too_large come back in the envelope
    with their statuses."""
    async with client() as c:
        error_of(
            await c.post("/v1/workers", json={"profile": {"kind": "named", "name": "nope"}}),
            404,
            "profile_not_found",
        )
        hang = (
            await c.post("/v1/workers", json={"profile": {"kind": "named", "name": "hang"}})
        ).json()["worker"]["worker_id"]
        first = (await c.post(f"/v1/workers/{hang}/input", json={"content": "a"})).json()["ack"]
        busy = error_of(
            await c.post(f"/v1/workers/{hang}/input", json={"content": "b"}), 409, "worker_busy"
        )
        assert busy["details"]["active_turn_id"] == first["turn_id"]
        await c.post(
            f"/v1/workers/{hang}/input",
            json={"content": "k", "kind": "system", "idempotency_key": "k1"},
        )
        error_of(
            await c.post(
                f"/v1/workers/{hang}/input",
                json={"content": "other", "kind": "system", "idempotency_key": "k1"},
            ),
            409,
            "idempotency_conflict",
        )
        await c.post(f"/v1/workers/{hang}/stop")
        error_of(
            await c.post(f"/v1/workers/{hang}/input", json={"content": "c"}), 409, "worker_stopped"
        )
        error_of(await c.get("/v1/workers/wkr_missing"), 404, "worker_not_found")
        error_of(
            await c.get(f"/v1/workers/{hang}/transcript", params={"limit": 51}),
            400,
            "limit_too_large",
        )
        error_of(await c.get("/v1/workers", params={"limit": 100000}), 400, "limit_too_large")
    gpt = Profile(name="gpt", provider="in-house", model="m")  # no backend for it here
    async with Runtime(runtime_id="r2", profiles=Profiles([gpt])) as rt:
        app = create_app(rt, HttpSettings(token=TOKEN))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r", headers=AUTH) as c:
            body = {"profile": {"kind": "named", "name": "gpt"}}
            error_of(await c.post("/v1/workers", json=body), 501, "unsupported_operation")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", ""),
        (b'{"content": 42}', "content"),
        (b'{"content": "  "}', "content"),
        (b'{"content": "x", "kind": "assistant"}', "kind"),
        (b'{"content": "x", "surprise": true}', "surprise"),
        (b"[]", ""),
        (b'"just a string"', ""),
        (b"", ""),
    ],
)
async def test_malformed_and_mistyped_bodies_are_invalid_input(body: bytes, field: str) -> None:
    """Malformed JSON, wrong types, blank content and unknown fields are 400 invalid_input
    naming the failing field, never 422 or 5xx."""
    async with client() as c:
        wid = (await c.post("/v1/workers")).json()["worker"]["worker_id"]
        response = await c.post(
            f"/v1/workers/{wid}/input", content=body, headers={"content-type": "application/json"}
        )
        error = error_of(response, 400, "invalid_input")
        if field:
            assert error["details"]["field"] == field


async def test_bad_query_values_are_invalid_input() -> None:
    """Non-integer limits, negative starts and unknown statuses are invalid_input."""
    async with client() as c:
        wid = (await c.post("/v1/workers")).json()["worker"]["worker_id"]
        error_of(await c.get("/v1/workers", params={"limit": "ten"}), 400, "invalid_input")
        error_of(await c.get("/v1/workers", params={"status": "asleep"}), 400, "invalid_input")
        error_of(
            await c.get(f"/v1/workers/{wid}/transcript", params={"start": -1}), 400, "invalid_input"
        )
        error_of(await c.get("/v1/workers", params={"after": "wkr_unknown"}), 400, "invalid_input")


async def test_a_ten_megabyte_body_is_payload_too_large() -> None:
    """A body over the 1 MiB cap is 413 payload_too_large, with or without Content-Length;
    content over max_input_bytes but under the cap is invalid_input."""
    async with client() as c:
        wid = (await c.post("/v1/workers")).json()["worker"]["worker_id"]
        error_of(
            await c.post(f"/v1/workers/{wid}/input", content=b"x" * (10 * 1024 * 1024)),
            413,
            "payload_too_large",
        )

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"y" * (512 * 1024)

        error_of(
            await c.post(f"/v1/workers/{wid}/input", content=chunks()), 413, "payload_too_large"
        )
        big = json.dumps({"content": "z" * (300 * 1024)})
        error_of(await c.post(f"/v1/workers/{wid}/input", content=big), 400, "invalid_input")


@pytest.mark.parametrize(
    "raw_path",
    ["/v1/workers/..", "/v1/workers/%2e%2e", "/v1/workers/%2E%2E/input", "/v1/workers/a%00b",
     "/v1/workers/" + "%C3%A9" * 130, "/v1/workers/%2e%2e%2fetc%2fpasswd", "/v1/workers/.hidden"],
)  # fmt: skip
async def test_hostile_ids_are_typed_4xx_without_paths(raw_path: str) -> None:
    """Ids with dots, encoded dots, NUL or long unicode get a typed 4xx envelope, never a 5xx,
    and the body never holds a path or a traceback."""
    async with client() as c:
        method = c.post if raw_path.endswith("/input") else c.get
        kwargs: dict[str, Any] = {"json": {"content": "x"}} if method == c.post else {}
        response = await method(httpx.URL(raw_path), **kwargs)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] in {
            "invalid_input",
            "not_found",
            "worker_not_found",
        }
        assert "Traceback" not in response.text
        assert "/etc" not in response.text.replace("%2fetc", "")


async def test_unknown_routes_and_methods_use_the_envelope() -> None:
    """An unknown route is 404 not_found and a wrong method 405 method_not_allowed."""
    async with client() as c:
        error_of(await c.get("/v2/anything"), 404, "not_found")
        error_of(await c.delete("/v1/workers"), 405, "method_not_allowed")
        error_of(await c.get("/v1/workers/x/input"), 405, "method_not_allowed")


def test_http_modules_use_only_the_runtimes_public_api() -> None:
    """The HTTP layer imports only public names of worker_runtime and touches no private
    attribute of the Runtime: Worker semantics never live in the HTTP layer."""
    import worker_runtime
    import worker_runtime.sse

    public = set(worker_runtime.__all__)
    for path in HTTP_SRC.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module is None:
                assert {a.name for a in node.names} <= public, path.name
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                assert node.module in {"errors", "sse"}, (path.name, node.module)
                if node.module == "sse":  # the framework-free stream format: public names only
                    assert {a.name for a in node.names} <= set(worker_runtime.sse.__all__)
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in {"runtime", "rt"}
            ):
                assert not node.attr.startswith("_"), (path.name, node.attr)


async def test_the_committed_openapi_document_is_current() -> None:
    """docs/api/runtime-openapi.json is exactly what the app serves (regenerate with
    `uv run python scripts/gen_openapi.py`); it documents the event stream too."""
    pytest.importorskip("sse_starlette", reason="the event-stream extra is not installed")
    committed = Path(__file__).parents[3] / "docs" / "api" / "runtime-openapi.json"
    async with client() as c:
        served = (await c.get("/openapi.json")).json()
    assert json.loads(committed.read_text(encoding="utf-8")) == served


async def test_a_closing_runtime_answers_runtime_unavailable() -> None:
    """Once the Runtime is shutting down, commands over REST are 503 runtime_unavailable with
    a reason, while reads still answer."""
    rt = Runtime(runtime_id="closing")
    async with rt:
        app = create_app(rt, HttpSettings(token=TOKEN))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r", headers=AUTH) as c:
            wid = (await c.post("/v1/workers")).json()["worker"]["worker_id"]
            await rt.close()
            error = error_of(
                await c.post(f"/v1/workers/{wid}/input", json={"content": "x"}),
                503,
                "runtime_unavailable",
            )
            assert error["details"]["reason"] == "shutting_down"
            assert (await c.get(f"/v1/workers/{wid}")).status_code == 200


async def test_an_unexpected_failure_is_internal_error_without_its_text() -> None:
    """An exception nobody expected becomes 500 internal_error; its text (which could hold a
    path or a secret) and the traceback stay out of the response."""
    from worker_runtime import MemoryStore

    class BrokenStore(MemoryStore):
        async def read_transcript(self, worker_id: str, start: int, limit: int) -> Any:
            raise RuntimeError("/srv/secret/path sk-live-123")

    async with Runtime(runtime_id="broken", store=BrokenStore()) as rt:
        app = create_app(rt, HttpSettings(token=TOKEN))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://r", headers=AUTH) as c:
            wid = (await c.post("/v1/workers", json={"initial_input": {"content": "x"}})).json()[
                "worker"
            ]["worker_id"]
            response = await c.get(f"/v1/workers/{wid}/transcript")
            error_of(response, 500, "internal_error")
            assert "secret" not in response.text
            assert "sk-live" not in response.text
            assert "Traceback" not in response.text
