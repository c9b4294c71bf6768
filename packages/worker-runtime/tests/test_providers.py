"""The openai and anthropic execution backends, through the official SDKs, against a real
local server that speaks each provider's streaming protocol (no SDK patching)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import anyio
import pytest

pytest.importorskip("openai", reason="the openai extra is not installed")
pytest.importorskip("anthropic", reason="the anthropic extra is not installed")

from worker_runtime import Event, Profile, Profiles, Runtime

from .fake_providers import Reply, fake_provider

pytestmark = pytest.mark.anyio

KEY = "sk-planted-test-key-5f1e9a0c7b3d2e4f"
KEY_ENV = "YOI_TEST_PROVIDER_KEY"
KINDS = ["openai", "anthropic"]
TERMINAL = ("turn_completed", "turn_failed", "turn_cancelled")


def profile(kind: str, root: str, **fields: Any) -> Profile:
    if kind == "openai":
        base = {"provider": "openai", "model": "gpt-test", "base_url": root + "/v1"}
    else:
        base = {"provider": "anthropic", "model": "claude-test", "base_url": root}
    settings = {"api_key_env": KEY_ENV, "retry_backoff_s": 0.01, **fields}
    return Profile(name="p", **base, **settings)


def runtime(p: Profile) -> Runtime:
    return Runtime(runtime_id="prov", profiles=Profiles([p], default="p"))


async def turn(rt: Runtime, worker: Any, text: str) -> list[Event]:
    """Send ``text`` and return the turn's events up to its end."""
    ack = await rt.send_input(worker.worker_ref, {"content": text})
    events: list[Event] = []
    with anyio.fail_after(20):
        async with rt.subscribe(cursor=ack.cursor, worker=worker.worker_ref) as stream:
            async for event in stream:
                events.append(event)
                if event.kind in TERMINAL:
                    return events
    raise AssertionError("unreachable")


def deltas(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.kind == "output_delta")


@pytest.fixture(autouse=True)
def planted_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_turn_streams_the_providers_deltas_and_records_its_usage(kind: str) -> None:
    """Each delta the provider streams is an output_delta, the provider's usage lands in
    turn_completed and the overview, and the request carries the model, the key and the
    profile's system prompt first."""
    async with fake_provider() as (server, root):
        server.queue(Reply(deltas=["Hel", "lo", " world"], usage=(17, 3)))
        p = profile(kind, root, system_prompt="Be brief.", max_tokens=64, temperature=0.2)
        async with runtime(p) as rt:
            w = await rt.create_worker()
            events = await turn(rt, w, "hi")
            detail = await rt.get_worker(w.worker_ref)
    assert deltas(events) == "Hello world"
    done = events[-1]
    assert done.kind == "turn_completed"
    assert done.data["usage"] == {"input_tokens": 17, "output_tokens": 3}
    assert detail.overview.usage.input_tokens == 17
    sent = server.requests[0]
    assert sent["model"] == p.model
    assert sent["stream"] is True
    assert sent["max_tokens"] == 64
    assert sent["temperature"] == 0.2
    if kind == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    else:
        assert sent["system"] == "Be brief."
        sent_key = server.headers[0].get("x-api-key") or server.headers[0]["authorization"]
        assert sent_key in (KEY, f"Bearer {KEY}")  # the header differs by SDK version
    assert sent["messages"][-1] == {"role": "user", "content": "hi"}


@pytest.mark.parametrize("kind", KINDS)
async def test_the_second_request_carries_the_first_exchange(kind: str) -> None:
    """A multi-turn conversation: the second turn's request holds the first user input and
    the first reply before the new input."""
    async with fake_provider() as (server, root):
        server.queue(Reply(deltas=["Paris."]), Reply(deltas=["Lyon."]))
        async with runtime(profile(kind, root)) as rt:
            w = await rt.create_worker()
            await turn(rt, w, "Capital of France?")
            await turn(rt, w, "And the next city?")
    messages = [m for m in server.requests[1]["messages"] if m["role"] != "system"]
    assert messages == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And the next city?"},
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_refused_key_fails_the_turn_once_without_the_key(kind: str) -> None:
    """A 401 is provider_auth_failed, is not retried, and the provider's message (which
    quotes the key) reaches nobody with the key in it."""
    async with fake_provider() as (server, root):
        server.queue(Reply(status=401))
        async with runtime(profile(kind, root)) as rt:
            w = await rt.create_worker()
            events = await turn(rt, w, "hi")
    error = events[-1].data["error"]
    assert events[-1].kind == "turn_failed"
    assert error["code"] == "provider_auth_failed"
    assert KEY not in json.dumps(error)
    assert KEY[:12] not in json.dumps(error)
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_rate_limits_are_retried_after_the_providers_wait_then_reported(kind: str) -> None:
    """A 429 with retry-after is retried after that wait and the turn completes; when every
    retry is used up the turn fails with provider_rate_limited carrying retry_after_s; a wait
    longer than the Runtime will sleep fails at once."""
    async with fake_provider() as (server, root):
        limited = Reply(status=429, headers={"retry-after": "0.05"})
        server.queue(limited, Reply(deltas=["ok"]))
        async with runtime(profile(kind, root, max_retries=1)) as rt:
            w = await rt.create_worker()
            first = await turn(rt, w, "one")
            server.queue(limited, limited)
            second = await turn(rt, w, "two")
            server.queue(Reply(status=429, headers={"retry-after": "120"}))
            third = await turn(rt, w, "three")
    assert first[-1].kind == "turn_completed"
    assert deltas(first) == "ok"
    assert second[-1].data["error"]["code"] == "provider_rate_limited"
    assert second[-1].data["error"]["details"]["retry_after_s"] == 0.05
    assert third[-1].data["error"]["details"]["retry_after_s"] == 120
    assert len(server.requests) == 2 + 2 + 1


@pytest.mark.parametrize("kind", KINDS)
async def test_provider_outages_are_retried_with_backoff_within_the_bound(kind: str) -> None:
    """A 5xx is retried (max_retries times at most) and a later success completes the turn;
    past the bound the turn fails with provider_unavailable."""
    async with fake_provider() as (server, root):
        server.queue(Reply(status=503), Reply(status=500), Reply(deltas=["back"]))
        async with runtime(profile(kind, root, max_retries=2)) as rt:
            w = await rt.create_worker()
            recovered = await turn(rt, w, "one")
            server.queue(*[Reply(status=502)] * 3)
            failed = await turn(rt, w, "two")
    assert deltas(recovered) == "back"
    assert failed[-1].data["error"]["code"] == "provider_unavailable"
    assert len(server.requests) == 3 + 3


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_cut_mid_reply_is_a_provider_error_and_not_retried(kind: str) -> None:
    """When the provider drops the connection after some deltas, the turn fails with
    provider_error; the deltas already streamed stay, and nothing is retried (the text
    already sent cannot be taken back)."""
    async with fake_provider() as (server, root):
        server.queue(Reply(deltas=["partial ", "reply ", "never"], cut_after=2))
        async with runtime(profile(kind, root)) as rt:
            w = await rt.create_worker()
            events = await turn(rt, w, "hi")
    assert deltas(events) == "partial reply "
    assert events[-1].kind == "turn_failed"
    assert events[-1].data["error"]["code"] == "provider_error"
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_cancel_closes_the_providers_connection(kind: str) -> None:
    """Cancelling a turn while the provider streams slowly closes the HTTP request: the
    provider sees the connection closed within 1 s of the cancel."""
    async with fake_provider() as (server, root):
        server.queue(Reply(deltas=[f"w{i} " for i in range(20)], delay_s=0.5))
        async with runtime(profile(kind, root)) as rt:
            w = await rt.create_worker()
            ack = await rt.send_input(w.worker_ref, {"content": "go slowly"})
            async with rt.subscribe(cursor=ack.cursor, worker=w.worker_ref) as stream:
                with anyio.fail_after(10):
                    async for event in stream:
                        if event.kind == "output_delta":
                            break
                cancelled_at = time.monotonic()
                await rt.cancel(w.worker_ref, reason="enough")
                with anyio.fail_after(10):
                    async for event in stream:
                        if event.kind in TERMINAL:
                            break
            with anyio.fail_after(5):
                while not server.disconnected_at:
                    await anyio.sleep(0.01)
    assert event.kind == "turn_cancelled"
    assert server.disconnected_at[0] - cancelled_at < 1.0


@pytest.mark.parametrize("kind", KINDS)
async def test_timeouts_and_unreachable_providers_are_typed(kind: str) -> None:
    """A provider slower than timeout_s is provider_timeout; one that refuses connections
    is provider_unavailable; a missing key variable is provider_auth_failed naming it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with fake_provider() as (server, root):
        server.queue(Reply(deltas=["late"], delay_s=3.0))
        slow = profile(kind, root, timeout_s=0.3, max_retries=0)
        async with runtime(slow) as rt:
            w = await rt.create_worker()
            timed_out = await turn(rt, w, "hi")
    async with runtime(profile(kind, closed, max_retries=0)) as rt:
        w = await rt.create_worker()
        refused = await turn(rt, w, "hi")
    unset = profile(kind, closed, api_key_env="YOI_TEST_UNSET_VARIABLE")
    async with runtime(unset) as rt:
        w = await rt.create_worker()
        no_key = await turn(rt, w, "hi")
    assert timed_out[-1].data["error"]["code"] == "provider_timeout"
    assert refused[-1].data["error"]["code"] == "provider_unavailable"
    assert no_key[-1].data["error"]["code"] == "provider_auth_failed"
    assert "YOI_TEST_UNSET_VARIABLE" in no_key[-1].data["error"]["message"]


@pytest.mark.parametrize("kind", KINDS)
async def test_the_key_appears_in_no_output(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """With a key planted in the environment, no event, transcript, detail, diagnostic,
    profile or backend repr, or log line carries it (on success and on every failure)."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    async with fake_provider() as (server, root):
        server.queue(Reply(), Reply(status=401), Reply(status=429), Reply(status=400))
        p = profile(kind, root, max_retries=0)
        async with runtime(p) as rt:
            w = await rt.create_worker()
            for text in ("a", "b", "c", "d"):
                seen += [json.dumps(e.to_dict()) for e in await turn(rt, w, text)]
            seen.append((await rt.read_transcript(w.worker_ref)).model_dump_json())
            seen.append((await rt.get_worker(w.worker_ref)).model_dump_json())
            seen += [d.model_dump_json() for d in await rt.diagnostics()]
            seen.append((await rt.summary()).model_dump_json())
            seen += [repr(p), repr(rt), repr(rt._backends)]
    seen += [record.getMessage() for record in caplog.records]
    blob = "\n".join(seen)
    assert "turn_failed" in blob
    for fragment in (KEY, KEY[:12], KEY[-8:]):
        assert fragment not in blob


async def test_context_budget_drops_the_oldest_entries_but_never_the_prompt() -> None:
    """With context_tokens set, a later request leaves out the oldest conversation entries
    first, and still starts with the system prompt and ends with the new input."""
    async with fake_provider() as (server, root):
        server.queue(*[Reply(deltas=["x" * 200]) for _ in range(4)])
        p = profile("openai", root, system_prompt="Stay on topic.", context_tokens=200)
        async with runtime(p) as rt:
            w = await rt.create_worker()
            for i in range(4):
                await turn(rt, w, f"question {i} " + "y" * 200)
    last = server.requests[-1]["messages"]
    assert last[0] == {"role": "system", "content": "Stay on topic."}
    assert last[-1]["content"].startswith("question 3 ")
    assert len(last) < 1 + 2 * 3 + 1  # some earlier entries were left out
    assert all(not m["content"].startswith("question 0 ") for m in last)
    first_kept = server.requests[1]["messages"]
    assert first_kept[0]["role"] == "system"


async def test_a_provider_profile_without_its_extra_names_the_install(tmp_path: Any) -> None:
    """Creating a Worker on a provider whose extra is missing fails with missing_extra and
    creates nothing (checked in a subprocess where the SDK cannot be imported)."""
    import subprocess
    import sys

    code = (
        "import sys, anyio\n"
        "sys.modules['openai'] = None\n"
        "from worker_runtime import Runtime, Profiles, Profile, MissingExtraError\n"
        "async def main():\n"
        "    p = Profile(name='g', provider='openai', model='m', api_key_env='K')\n"
        "    async with Runtime(profiles=Profiles([p])) as rt:\n"
        "        try:\n"
        "            await rt.create_worker({'profile': {'kind': 'named', 'name': 'g'}})\n"
        "        except MissingExtraError as exc:\n"
        "            print(exc.code, exc.details['install'])\n"
        "        print(len((await rt.list_workers()).workers))\n"
        "anyio.run(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split("\n")[:2] == [
        "missing_extra pip install 'worker-runtime[openai]'",
        "0",
    ]


async def test_a_runtime_process_streams_a_providers_reply_over_http(tmp_path: Any) -> None:
    """End to end: a yoi-runtime process with an openai profile streams the provider's reply
    to an SSE client, and nothing the process prints (its JSON logs at debug level included)
    shows the key."""
    import re
    import signal
    import subprocess
    import sys

    import httpx

    async with fake_provider() as (server, root):
        server.queue(Reply(deltas=["over ", "http"], usage=(4, 2)))
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            'default = "gpt"\n[profiles.gpt]\nprovider = "openai"\nmodel = "gpt-test"\n'
            f'base_url = "{root}/v1"\napi_key_env = "{KEY_ENV}"\n'
        )
        token = "runtime-token-for-the-provider-test"
        args = [
            sys.executable, "-m", "worker_runtime.cli", "--bind", "127.0.0.1:0",
            "--token-env", "YOI_TEST_RUNTIME_TOKEN", "--profiles", str(profiles),
            "--log-level", "debug",
        ]  # fmt: skip
        env = {**os.environ, KEY_ENV: KEY, "YOI_TEST_RUNTIME_TOKEN": token}
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert match, line
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=match.group(0), headers=auth) as c:
                worker = (await c.post("/v1/workers", json={})).json()["worker"]
                path = f"/v1/workers/{worker['worker_id']}"
                assert (await c.post(f"{path}/input", json={"content": "hi"})).status_code == 200
                kinds, text = [], ""
                params = {"cursor": worker["last_cursor"]}
                with anyio.fail_after(20):
                    async with c.stream("GET", f"{path}/events", params=params) as events:
                        async for raw in events.aiter_lines():
                            if not raw.startswith("data: "):
                                continue
                            event = json.loads(raw[6:])
                            kinds.append(event["kind"])
                            if event["kind"] == "output_delta":
                                text += event["data"]["text"]
                            if event["kind"] == "turn_completed":
                                break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            printed = proc.stdout.read() + proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
    assert text == "over http"
    assert kinds[-1] == "turn_completed"
    assert printed
    for fragment in (KEY, KEY[:12], KEY[-8:]):
        assert fragment not in printed
