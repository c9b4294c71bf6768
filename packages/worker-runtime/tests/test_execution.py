"""Execution backends: echo and the scripted test double."""

from __future__ import annotations

import pytest

from worker_runtime import EchoBackend, Profile, TextDelta, TurnRequest, TurnUsage, WorkerRef
from worker_runtime.execution import ContextMessage
from worker_runtime.execution.echo import split_words
from worker_runtime.testing import EventCapture, ScriptedBackend

from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "text", ["one", " lead", "trail \n", "a  b\tc\n\nd", "日本語 テキスト", "x" * 1000]
)
def test_echo_words_concatenate_to_the_input_exactly(text: str) -> None:
    """Echo's word chunks, joined, are exactly the input, and there is one per word."""
    words = split_words(text)
    assert "".join(words) == text
    assert len(words) == len(text.split())


async def test_echo_streams_the_last_user_message_and_counts_words() -> None:
    """Echo yields one delta per word of the last user message, then usage in words over the
    whole context."""
    request = TurnRequest(
        worker_ref=WorkerRef(runtime_id="r", worker_id="w"),
        turn_id="t",
        profile=Profile(name="e", provider="echo"),
        messages=[
            ContextMessage("system", "be nice"),
            ContextMessage("user", "hi there"),
            ContextMessage("assistant", "hi there"),
            ContextMessage("user", "bye now friend"),
        ],
    )
    items = [item async for item in EchoBackend().stream(request)]
    assert items[:-1] == [TextDelta("bye "), TextDelta("now "), TextDelta("friend")]
    assert items[-1] == TurnUsage(input_tokens=9, output_tokens=3)


async def test_a_system_prompt_leads_the_context(open_runtime: OpenRuntime) -> None:
    """A profile's system prompt is the first message of every turn's context."""
    backend = ScriptedBackend()
    terse = Profile(name="terse", provider="scripted", system_prompt="Be terse.")
    async with open_runtime(scripted=backend, profiles=[terse]) as rt:
        w = await create(rt, "terse")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "hello"})
            failed = await cap.wait_for("turn_failed")
        assert [(m.role, m.content) for m in backend.requests[0].messages] == [
            ("system", "Be terse."),
            ("user", "hello"),
        ]
        # A scripted backend with nothing left to play fails typed, never inventing output.
        assert failed.data["error"]["code"] == "provider_error"


async def test_echo_usage_stays_exact_over_many_turns_with_a_system_prompt(
    open_runtime: OpenRuntime,
) -> None:
    """Turn after turn, echo's input_tokens equals the words of the system prompt plus every
    transcript entry up to and including the turn's input."""
    prompted = Profile(name="prompted", provider="echo", system_prompt="be very brief")
    async with open_runtime(profiles=[prompted]) as rt:
        w = await create(rt, "prompted")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            for i in range(6):
                await rt.send_input(w.worker_ref, {"content": "note " * i + "x", "kind": "system"})
                await rt.send_input(w.worker_ref, {"content": f"turn {i} " + "w " * i})
                await cap.wait_for("turn_completed", count=i + 1)
        page = await rt.read_transcript(w.worker_ref, limit=100)
        completed = cap.of_kind("turn_completed")
        for i, event in enumerate(completed):
            upto = [e for e in page.items if e.sequence <= 3 * i + 2]
            expected = 3 + sum(len(e.content.split()) for e in upto)
            assert event.data["usage"]["input_tokens"] == expected
