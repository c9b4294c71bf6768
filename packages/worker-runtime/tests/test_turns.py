"""Turns: event order, transcript, busy policy, queue, idempotency and concurrency."""

from __future__ import annotations

import anyio
import pytest

from worker_runtime import (
    IdempotencyConflict,
    InvalidInput,
    Limits,
    ProviderAuthFailed,
    WorkerBusy,
)
from worker_runtime.testing import EventCapture, ScriptedBackend, ScriptedTurn

from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio

TERMINAL = {"turn_completed", "turn_failed", "turn_cancelled", "turn_interrupted"}


async def test_echo_turn_emits_events_in_order_and_leaves_a_transcript(
    open_runtime: OpenRuntime,
) -> None:
    """A user input yields input_accepted, turn_started, one output_delta per word,
    message_completed and turn_completed, and the transcript holds the user and assistant
    entries."""
    async with open_runtime() as rt:
        w = await create(rt)
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            ack = await rt.send_input(w.worker_ref, {"content": "  hello big\tworld "})
            await cap.wait_for("turn_completed")
        assert cap.kinds == [
            "input_accepted",
            "turn_started",
            "output_delta",
            "output_delta",
            "output_delta",
            "message_completed",
            "turn_completed",
        ]
        deltas = [e.data["text"] for e in cap.of_kind("output_delta")]
        assert "".join(deltas) == "  hello big\tworld "
        assert all(e.turn_id == ack.turn_id for e in cap.events)
        assert cap.events[0].cursor == ack.cursor
        completed = cap.of_kind("turn_completed")[0]
        assert completed.data["usage"] == {"input_tokens": 3, "output_tokens": 3}
        page = await rt.read_transcript(w.worker_ref)
        assert [(i.sequence, i.role, i.content) for i in page.items] == [
            (1, "user", "  hello big\tworld "),
            (2, "assistant", "  hello big\tworld "),
        ]
        detail = await rt.get_worker(w.worker_ref)
        assert detail.status == "idle"
        assert detail.overview.turns.completed == 1
        assert detail.overview.usage.output_tokens == 3
        assert detail.overview.last_cursor == completed.cursor


async def test_echo_usage_counts_the_whole_context(open_runtime: OpenRuntime) -> None:
    """Echo's input_tokens counts the words of every message sent for the turn, so a second
    turn also counts the first exchange."""
    async with open_runtime() as rt:
        w = await create(rt)
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "one two"})
            await cap.wait_for("turn_completed")
            await rt.send_input(w.worker_ref, {"content": "three"})
            second = await cap.wait_for("turn_completed", count=2)
        assert second.data["usage"] == {"input_tokens": 5, "output_tokens": 1}


async def test_system_input_adds_context_without_starting_a_turn(open_runtime: OpenRuntime) -> None:
    """System input is appended to the transcript, starts no turn, and is accepted even while
    a turn runs; the next turn's context carries it."""
    backend = ScriptedBackend(ScriptedTurn.hang_after("x"), ScriptedTurn.reply("ok"))
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        first = await rt.send_input(w.worker_ref, {"content": "first"})
        await backend.wait_started()
        ack = await rt.send_input(w.worker_ref, {"kind": "system", "content": "be brief"})
        assert ack.turn_id is None
        assert ack.queued is False
        await rt.cancel(w.worker_ref, turn_id=first.turn_id)
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "second"})
            await cap.wait_for("turn_completed")
        roles = [(m.role, m.content) for m in backend.requests[1].messages]
        assert roles == [
            ("user", "first"),
            ("system", "be brief"),
            ("assistant", "x"),
            ("user", "second"),
        ]


async def test_failed_turn_commits_an_error_entry(open_runtime: OpenRuntime) -> None:
    """A typed backend failure ends the turn with turn_failed {error: {code, message}} and an
    error transcript entry, and the Worker is idle again."""
    backend = ScriptedBackend(ScriptedTurn.fail(ProviderAuthFailed("the key was rejected"), "a"))
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "hi"})
            failed = await cap.wait_for("turn_failed")
        assert failed.data["error"] == {
            "code": "provider_auth_failed",
            "message": "the key was rejected",
        }
        assert not cap.of_kind("message_completed")
        page = await rt.read_transcript(w.worker_ref)
        assert page.items[-1].role == "error"
        assert page.items[-1].content == "provider_auth_failed: the key was rejected"
        detail = await rt.get_worker(w.worker_ref)
        assert detail.status == "idle"
        assert detail.overview.turns.failed == 1


async def test_unexpected_backend_exception_is_a_typed_failure_without_internals(
    open_runtime: OpenRuntime,
) -> None:
    """A backend that raises a plain exception fails the turn as internal_error, and the
    exception's text does not leak into the event."""

    class Broken:
        async def stream(self, request: object):  # type: ignore[no-untyped-def]
            raise RuntimeError("secret /etc/passwd detail")
            yield  # pragma: no cover

    async with open_runtime(backends={"scripted": Broken()}) as rt:
        w = await create(rt, "scripted")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            await rt.send_input(w.worker_ref, {"content": "hi"})
            failed = await cap.wait_for("turn_failed")
        assert failed.data["error"]["code"] == "internal_error"
        assert "passwd" not in str(failed.data)


async def test_busy_reject_names_the_active_turn(open_runtime: OpenRuntime) -> None:
    """User input to a running Worker with on_busy=reject fails with worker_busy naming the
    active turn."""
    backend = ScriptedBackend(ScriptedTurn.hang_after())
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        first = await rt.send_input(w.worker_ref, {"content": "one"})
        with pytest.raises(WorkerBusy) as info:
            await rt.send_input(w.worker_ref, {"content": "two"})
        assert info.value.details["active_turn_id"] == first.turn_id
        assert info.value.status == 409


async def test_enqueue_runs_inputs_in_order_and_respects_the_bound(
    open_runtime: OpenRuntime,
) -> None:
    """Enqueued inputs are acknowledged as queued, refused past max_queued_inputs, and run in
    order after the active turn."""
    backend = ScriptedBackend(default=ScriptedTurn.reply("r", delay_s=0.001))
    async with open_runtime(scripted=backend, limits=Limits(max_queued_inputs=3)) as rt:
        w = await create(rt, "scripted")
        async with EventCapture(rt, worker=w.worker_ref) as cap:
            acks = [await rt.send_input(w.worker_ref, {"content": "in0", "on_busy": "enqueue"})]
            for i in range(1, 4):
                acks.append(
                    await rt.send_input(w.worker_ref, {"content": f"in{i}", "on_busy": "enqueue"})
                )
            with pytest.raises(WorkerBusy) as info:
                await rt.send_input(w.worker_ref, {"content": "over", "on_busy": "enqueue"})
            assert info.value.details["active_turn_id"] == acks[0].turn_id
            assert [a.queued for a in acks] == [False, True, True, True]
            assert (await rt.get_worker(w.worker_ref)).queued_inputs == 3
            await cap.wait_for("turn_completed", count=4)
        started = [e.turn_id for e in cap.of_kind("turn_started")]
        assert started == [a.turn_id for a in acks]
        last_user = [r.messages[-1].content for r in backend.requests]
        assert last_user == ["in0", "in1", "in2", "in3"]
        # Queued inputs of later turns are not part of an earlier turn's context.
        assert [m.content for m in backend.requests[0].messages] == ["in0"]
        assert [m.content for m in backend.requests[1].messages] == ["in0", "r", "in1"]


async def test_fifty_concurrent_inputs_under_reject_accept_exactly_one(
    open_runtime: OpenRuntime,
) -> None:
    """Of 50 concurrent user inputs with on_busy=reject, exactly one is accepted and the rest
    get worker_busy."""
    backend = ScriptedBackend(ScriptedTurn.hang_after())
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        accepted: list[str] = []
        busy: list[str] = []

        async def send(i: int) -> None:
            try:
                ack = await rt.send_input(w.worker_ref, {"content": f"m{i}"})
                accepted.append(ack.turn_id or "")
            except WorkerBusy:
                busy.append(str(i))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(send, i)
        assert len(accepted) == 1
        assert len(busy) == 49
        detail = await rt.get_worker(w.worker_ref)
        assert detail.transcript_len == 1
        assert detail.active_turn_id == accepted[0]


async def test_fifty_concurrent_inputs_under_enqueue_fill_the_queue_in_order(
    open_runtime: OpenRuntime,
) -> None:
    """Of 50 concurrent enqueued inputs, one runs, max_queued_inputs are queued, the rest get
    worker_busy, and the accepted ones run in acknowledgement order."""
    backend = ScriptedBackend(default=ScriptedTurn.reply("ok"))
    async with open_runtime(scripted=backend) as rt:
        w = await create(rt, "scripted")
        accepted: list[tuple[int, str]] = []
        busy = 0

        async def send(i: int) -> None:
            nonlocal busy
            try:
                ack = await rt.send_input(w.worker_ref, {"content": f"m{i}", "on_busy": "enqueue"})
                accepted.append((ack.transcript_sequence, ack.turn_id or ""))
            except WorkerBusy:
                busy += 1

        async with EventCapture(rt, worker=w.worker_ref) as cap:
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(send, i)
            assert len(accepted) == 1 + rt.limits.max_queued_inputs
            assert busy == 50 - len(accepted)
            await cap.wait_for("turn_completed", count=len(accepted))
        ran = [e.turn_id for e in cap.of_kind("turn_started")]
        assert ran == [turn for _, turn in sorted(accepted)]


async def test_idempotency_key_with_same_body_returns_the_first_ack(
    open_runtime: OpenRuntime,
) -> None:
    """The same idempotency key with the same body returns the first ack and starts nothing
    new; with another body it is idempotency_conflict."""
    async with open_runtime() as rt:
        w = await create(rt)
        body = {"content": "hello", "idempotency_key": "k-1"}
        first = await rt.send_input(w.worker_ref, body)
        again = await rt.send_input(w.worker_ref, body)
        assert again == first
        with pytest.raises(IdempotencyConflict):
            await rt.send_input(w.worker_ref, {"content": "other", "idempotency_key": "k-1"})
        detail = await rt.get_worker(w.worker_ref)
        assert detail.transcript_len in (1, 2)  # the one input, and maybe its reply
        assert detail.overview.turns.total == 1


@pytest.mark.parametrize(
    "body",
    [
        {"content": ""},
        {"content": "   \n\t"},
        {"content": 42},
        {"content": "x", "kind": "assistant"},
        {"content": "x", "on_busy": "later"},
        {"content": "x", "extra": 1},
        {"content": "a\x00b"},
        {},
    ],
)
async def test_bad_input_bodies_are_invalid_input(
    open_runtime: OpenRuntime, body: dict[str, object]
) -> None:
    """Blank, mistyped, unknown-field or NUL-carrying input is invalid_input and changes
    nothing."""
    async with open_runtime() as rt:
        w = await create(rt)
        with pytest.raises(InvalidInput) as info:
            await rt.send_input(w.worker_ref, body)
        assert info.value.code == "invalid_input"
        assert (await rt.get_worker(w.worker_ref)).transcript_len == 0


async def test_content_over_max_input_bytes_is_invalid_input(open_runtime: OpenRuntime) -> None:
    """Content over limits.max_input_bytes (counted in UTF-8 bytes) is invalid_input."""
    async with open_runtime(limits=Limits(max_input_bytes=8)) as rt:
        w = await create(rt)
        await rt.send_input(w.worker_ref, {"content": "12345678", "kind": "system"})
        with pytest.raises(InvalidInput) as info:
            await rt.send_input(w.worker_ref, {"content": "ééééé"})  # 10 bytes
        assert info.value.details["max_input_bytes"] == 8


def test_the_context_budget_keeps_the_prompt_and_the_input_and_drops_the_oldest() -> None:
    """fit_context leaves the oldest conversation entries out first, keeps the order of the
    rest, and always keeps the system prompt and the last message, even over budget."""
    from worker_runtime._context import estimate_tokens, fit_context
    from worker_runtime.execution import ContextMessage

    prompt = ContextMessage("system", "p" * 40)
    history = [ContextMessage("user" if i % 2 else "assistant", f"{i}" * 40) for i in range(6)]
    last = ContextMessage("user", "now")
    messages = [prompt, *history, last]
    cost = estimate_tokens(history[0])
    budget = estimate_tokens(prompt) + estimate_tokens(last) + 2 * cost
    fitted = fit_context(messages, budget, has_prompt=True)
    assert fitted == [prompt, history[-2], history[-1], last]
    assert fit_context(messages, 10**6, has_prompt=True) == messages
    assert fit_context(messages, 16, has_prompt=True) == [prompt, last]
    assert fit_context([*history, last], 16, has_prompt=False) == [last]
    assert fit_context([last], 16, has_prompt=False) == [last]
