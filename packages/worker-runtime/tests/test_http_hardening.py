"""The Runtime's HTTP edge: no slash redirects (a 307 whose Location is built from the
client's Host header), and the bearer scheme matched case-insensitively."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
httpx = pytest.importorskip("httpx")

from worker_runtime import Runtime  # noqa: E402
from worker_runtime.http import HttpSettings, create_app  # noqa: E402

pytestmark = pytest.mark.anyio

TOKEN = "slash-token-4d1c"


async def test_a_trailing_slash_is_not_found_not_a_redirect() -> None:
    """``/v1/workers/``, ``/v1/runtime/`` and ``/healthz/`` answer 404 ``not_found`` with no
    ``Location``, whatever the Host header says."""
    async with Runtime(runtime_id="slash-rt") as rt:
        app = create_app(rt, HttpSettings(token=TOKEN))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://rt",
            headers={"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"},
        ) as client:
            for path in ("/v1/workers/", "/v1/runtime/", "/v1/events/"):
                response = await client.get(path)
                assert response.status_code == 404, (path, response.status_code)
                assert response.json()["error"]["code"] == "not_found"
                assert "location" not in response.headers
            assert (await client.get("/v1/workers")).status_code == 200


async def test_the_bearer_scheme_is_case_insensitive() -> None:
    """RFC 7235: ``bearer`` and ``BEARER`` are the same scheme; a wrong token or another
    scheme is still 401."""
    async with Runtime(runtime_id="scheme-rt") as rt:
        app = create_app(rt, HttpSettings(token=TOKEN))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://rt"
        ) as client:
            for value, status in (
                (f"bearer {TOKEN}", 200),
                (f"BEARER {TOKEN}", 200),
                (f"Bearer {TOKEN}", 200),
                ("Bearer wrong-token", 401),
                (f"Basic {TOKEN}", 401),
                (TOKEN, 401),
            ):
                response = await client.get("/v1/workers", headers={"Authorization": value})
                assert response.status_code == status, value
