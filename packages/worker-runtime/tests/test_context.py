"""The context policy: a turn sees the conversation as it stood when it started."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_runtime import Profile
from worker_runtime._context import estimate_tokens
from worker_runtime._worker import Turn
from worker_runtime.execution import ContextMessage

from .parts import open_parts

pytestmark = pytest.mark.anyio


async def test_a_turns_context_is_the_history_when_it_started() -> None:
    """A turn's context is the system prompt, then the history up to its own input; messages
    added later (the reply, the next input) are not in it."""
    profile = Profile(name="p", provider="echo", system_prompt="you are terse")
    async with open_parts() as parts:
        w = parts.new_worker(profile)
        policy = parts.context
        policy.add(w, "system", "note")
        turn = Turn("turn_1", 2, 0.0, policy.start(w, "first"))
        policy.add(w, "assistant", "reply")
        policy.start(w, "second")
        assert list(policy.context(w, turn)) == [
            ContextMessage("system", "you are terse"),
            ContextMessage("system", "note"),
            ContextMessage("user", "first"),
        ]


async def test_a_context_budget_leaves_the_oldest_messages_out() -> None:
    """With context_tokens, the oldest conversation entries are left out first; the prompt
    and the turn's own input stay."""
    old = "word " * 40
    async with open_parts() as parts:
        policy = parts.context
        probe = parts.new_worker()
        budget = estimate_tokens(ContextMessage("user", old)) + 2 * estimate_tokens(
            ContextMessage("user", "new")
        )
        w = parts.new_worker(Profile(name="b", provider="echo", context_tokens=budget))
        del probe
        policy.start(w, old)
        policy.add(w, "assistant", old)
        turn = Turn("turn_2", 3, 0.0, policy.start(w, "new"))
        assert [m.content for m in policy.context(w, turn)] == [old, "new"]


async def test_a_recovered_workers_history_is_read_once_from_the_store(tmp_path: Path) -> None:
    """A recovered Worker's history is read from its store, once, by its first turn, and put
    in front of what this process kept."""
    pytest.importorskip("orjson", reason="the fs-store extra is not installed")
    from worker_runtime import Runtime
    from worker_runtime.store.fs import FsRuntimeStore

    async with Runtime(runtime_id="rt-parts", store=FsRuntimeStore(tmp_path, fsync="never")) as rt:
        worker = await rt.create_worker({"initial_input": {"content": "remember this"}})
        async with rt.subscribe(cursor=worker.last_cursor, worker=worker.worker_id) as events:
            async for event in events:
                if event.kind == "turn_completed":
                    break
    async with open_parts(store=FsRuntimeStore(tmp_path, fsync="never")) as parts:
        (w,) = parts.catalog
        assert w.history is None
        turn = Turn("turn_next", 3, 0.0, parts.context.start(w, "next"))
        assert w.history == [ContextMessage("user", "next")]
        await parts.context.read(w, turn)
        await parts.context.read(w, turn)  # once
        assert w.history == [
            ContextMessage("user", "remember this"),
            ContextMessage("assistant", "remember this"),
            ContextMessage("user", "next"),
        ]
        assert turn.context_len == 3
