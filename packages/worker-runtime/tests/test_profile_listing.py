"""The profile listing: ``Runtime.list_profiles``, ``GET /v1/profiles`` and
``RuntimeClient.list_profiles`` give name, kind, provider, model and the default, never a
credential."""

from __future__ import annotations

import json

import pytest

from worker_runtime import Profile, ProfileEntry, Profiles, Runtime

pytestmark = pytest.mark.anyio

SECRET_BASE = "http://10.9.8.7:4321/v1"

NAMED = [
    Profile(name="slow", provider="echo", chunk_delay_ms=50),
    Profile(
        name="gpt",
        provider="openai",
        model="gpt-4.1-mini",
        base_url=SECRET_BASE,
        api_key_env="SECRET_KEY_VARIABLE",
        system_prompt="a private system prompt",
    ),
]


async def test_builtin_echo_is_the_default_without_a_configured_one() -> None:
    """With no configured default, builtin echo is listed as the default and nothing else is."""
    async with Runtime(runtime_id="p1", profiles=Profiles(NAMED)) as runtime:
        entries = await runtime.list_profiles()
    assert [(e.kind, e.name, e.is_default) for e in entries] == [
        ("builtin", "echo", True),
        ("named", "slow", False),
        ("named", "gpt", False),
    ]
    assert entries[2] == ProfileEntry(
        name="gpt", kind="named", provider="openai", model="gpt-4.1-mini", is_default=False
    )


async def test_a_configured_default_is_the_only_default() -> None:
    """A configured default profile is marked default, and builtin echo no longer is."""
    async with Runtime(runtime_id="p2", profiles=Profiles(NAMED, default="slow")) as runtime:
        entries = await runtime.list_profiles()
    assert [e.name for e in entries if e.is_default] == ["slow"]


async def test_http_route_and_client_list_profiles_without_credentials() -> None:
    """GET /v1/profiles needs the token, and neither it nor the client leaks a base URL, a key
    variable or a system prompt."""
    pytest.importorskip("starlette", reason="the http-server extra is not installed")
    pytest.importorskip("httpx_sse", reason="the event-stream extra (the client) is not installed")
    import httpx

    from worker_runtime.client import RuntimeClient
    from worker_runtime.http import HttpSettings, create_app

    from .servers import AUTH, TOKEN, serve_app

    async with Runtime(runtime_id="p3", profiles=Profiles(NAMED, default="gpt")) as runtime:
        app = create_app(runtime, HttpSettings(token=TOKEN))
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as http:
            refused = await http.get("/v1/profiles")
            assert refused.status_code == 401
            response = await http.get("/v1/profiles", headers=AUTH)
            assert response.status_code == 200
            text = response.text
            for secret in (SECRET_BASE, "SECRET_KEY_VARIABLE", "private system prompt"):
                assert secret not in text
            body = json.loads(text)
            assert body["profiles"][2] == {
                "name": "gpt",
                "kind": "named",
                "provider": "openai",
                "model": "gpt-4.1-mini",
                "is_default": True,
            }
            async with RuntimeClient(url, token=TOKEN) as client:
                listed = await client.list_profiles()
            assert listed == await runtime.list_profiles()
