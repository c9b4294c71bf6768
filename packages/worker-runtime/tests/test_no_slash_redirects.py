"""The Runtime never redirects: a trailing slash is a 404 envelope, never a 307 whose
Location is built from the client's Host header."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the http-server extra is not installed")
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
