"""What the fs store serves is what it was given: valid Unicode at the provider boundary,
all-or-nothing appends, and every read checked against the position it asked for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")
pytest.importorskip("openai", reason="the openai extra is not installed")

from worker_runtime import (
    InvalidInput,
    Limits,
    Profile,
    Profiles,
    Runtime,
    RuntimeUnavailable,
    StoreCorrupt,
)
from worker_runtime.events import Event
from worker_runtime.store.fs import FsRuntimeStore

from .fake_providers import Reply, fake_provider

pytestmark = pytest.mark.anyio
KEY_ENV = "YOI_TEST_SURROGATE_KEY"


def openai_runtime(root: Path, base: str) -> Runtime:
    p = Profile(
        name="p",
        provider="openai",
        model="gpt-test",
        base_url=base + "/v1",
        api_key_env=KEY_ENV,
        retry_backoff_s=0.01,
    )
    return Runtime(
        runtime_id="uni", store=FsRuntimeStore(root), profiles=Profiles([p], default="p")
    )


async def turn_events(rt: Runtime, ref: Any, text: str) -> list[Event]:
    ack = await rt.send_input(ref, {"content": text})
    out: list[Event] = []
    async with rt.subscribe(cursor=ack.cursor, worker=ref) as stream:
        async for event in stream:
            out.append(event)
            if event.kind in ("turn_completed", "turn_failed", "turn_cancelled"):
                return out
    raise AssertionError("unreachable")


async def test_an_emoji_split_into_surrogates_is_stored_whole_and_served_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider streaming the two UTF-16 halves of an emoji in two chunks completes the turn
    with the emoji whole; a lone half becomes U+FFFD; after a restart every event read from
    disk is the one its cursor names."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    async with fake_provider() as (server, base):
        server.queue(Reply(deltas=["smile ", "\ud83d", "\ude00", "!"]))
        server.queue(Reply(deltas=["lone \ud83d", " end"]))
        async with openai_runtime(tmp_path, base) as rt:
            w = await rt.create_worker()
            first = await turn_events(rt, w.worker_ref, "hi")
            second = await turn_events(rt, w.worker_ref, "again")
            other = await rt.create_worker()
    assert first[-1].kind == "turn_completed"
    text = "".join(e.data["text"] for e in first if e.kind == "output_delta")
    assert text == "smile \U0001f600!"
    assert second[-1].kind == "turn_completed"
    assert "".join(e.data["text"] for e in second if e.kind == "output_delta") == (
        "lone \ufffd end"
    )
    async with openai_runtime(tmp_path, base) as rt:
        page = await rt.read_transcript(w.worker_ref, start=0, limit=10)
        assert [i.content for i in page.items if i.role == "assistant"] == [
            "smile \U0001f600!",
            "lone \ufffd end",
        ]
        before = first[0].cursor
        replay: list[Event] = []
        async with rt.subscribe(cursor=before, worker=w.worker_ref) as stream:
            async for event in stream:
                replay.append(event)
                if event.cursor == second[-1].cursor:
                    break
        served = [(e.cursor, e.kind) for e in replay if e.kind != "input_accepted"]
        assert served == [(e.cursor, e.kind) for e in first[1:] + second]
        assert all(e.worker_id == w.worker_id for e in replay)
        assert other.worker_id != w.worker_id


async def test_input_content_with_a_lone_surrogate_is_refused_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    """Input content holding a lone surrogate is invalid_input and leaves the transcript empty."""
    async with Runtime(runtime_id="uni", store=FsRuntimeStore(tmp_path)) as rt:
        w = await rt.create_worker()
        with pytest.raises(InvalidInput):
            await rt.send_input(w.worker_ref, {"content": "note \udc00 here", "kind": "system"})
    async with Runtime(runtime_id="uni", store=FsRuntimeStore(tmp_path)) as rt:
        page = await rt.read_transcript(w.worker_ref, start=0, limit=10)
    assert page.items == []


def make_event(position: int, text: str) -> Event:
    return Event(position, f"inc-{position:x}", "diagnostic", "uni", None, None, "t", {"x": text})


async def test_an_append_the_store_cannot_encode_leaves_nothing_behind(tmp_path: Path) -> None:
    """A batch holding an event the store cannot encode is refused whole: the store stays
    at its previous head and the next append of that position lands in the right slot."""
    store = FsRuntimeStore(tmp_path)
    opened = await store.open(runtime_id="uni", limits=Limits())
    head = opened.head
    with pytest.raises(RuntimeUnavailable, match="nothing was recorded") as refused:
        store.append_events([make_event(head + 1, "ok"), make_event(head + 2, "bad \ud83d")])
    assert getattr(refused.value, "code", None) == "runtime_unavailable"
    store.append_events([make_event(head + 1, "one"), make_event(head + 2, "two")])
    await store.sync()
    got = store.read_events(head, 10, None)
    assert got is not None
    assert [(e.position, e.data["x"]) for e in got] == [(head + 1, "one"), (head + 2, "two")]
    with pytest.raises(RuntimeUnavailable, match="out of log order") as gap:
        store.append_events([make_event(head + 5, "skips ahead")])
    assert getattr(gap.value, "code", None) == "runtime_unavailable"
    await store.close()


async def test_a_misaligned_segment_is_a_typed_error_never_another_event(tmp_path: Path) -> None:
    """When a closed segment lacks a record (its slots shifted), reading a position there is
    store_corrupt with a store.log_misaligned diagnostic, never the event of the next slot."""
    store = FsRuntimeStore(tmp_path, segment_max_events=8)
    await store.open(runtime_id="uni", limits=Limits())
    store.append_events([make_event(p, f"e{p}") for p in range(1, 21)])
    await store.sync()
    await store.close()
    first = tmp_path / "events" / f"{1:020d}.jsonl"
    lines = first.read_bytes().splitlines(keepends=True)
    del lines[3]  # position 4 is gone: every later record sits one slot early
    first.write_bytes(b"".join(lines))
    index = first.with_suffix(".idx")
    offsets, total = [], 0
    for line in lines:
        offsets.append(total.to_bytes(8, "big"))
        total += len(line)
    index.write_bytes(b"".join(offsets) + (0).to_bytes(8, "big"))  # keep the slot count at 8
    reopened = FsRuntimeStore(tmp_path, segment_max_events=8)
    await reopened.open(runtime_id="uni", limits=Limits())
    assert [e.position for e in reopened.read_events(0, 3, None) or []] == [1, 2, 3]
    with pytest.raises(StoreCorrupt):
        reopened.read_events(3, 1, None)
    codes = [d.code for d in reopened.take_diagnostics()]
    assert "store.log_misaligned" in codes
    assert all(os.sep + "events" not in d.message for d in reopened.take_diagnostics())
    await reopened.close()


async def test_a_recovered_history_is_read_from_the_end_bounded_by_the_budget(
    tmp_path: Path,
) -> None:
    """A recovered Worker's history with a context budget is read from the end of its
    transcript: a short suffix of the whole, holding everything a context of that budget keeps."""
    from worker_runtime._context import fit_context
    from worker_runtime.execution import ContextMessage

    async with Runtime(runtime_id="uni", store=FsRuntimeStore(tmp_path)) as rt:
        w = await rt.create_worker()
        for i in range(600):
            body = {"content": f"note number {i} with some words in it", "kind": "system"}
            await rt.send_input(w.worker_ref, body)
    store = FsRuntimeStore(tmp_path)
    await store.open(runtime_id="uni", limits=Limits())
    whole = store.load_history(w.worker_id)
    bounded = store.load_history(w.worker_id, 50)
    await store.close()
    assert len(whole) == 600
    assert len(bounded) < 300
    assert whole[-len(bounded) :] == bounded
    turn = ContextMessage("user", "now")
    assert fit_context([*bounded, turn], 50, has_prompt=False) == fit_context(
        [*whole, turn], 50, has_prompt=False
    )


async def test_a_gap_no_crash_explains_is_a_typed_diagnostic(tmp_path: Path) -> None:
    """A record missing from the middle of the active segment (no bad line in its place) is
    reported as store.log_gap on open, and reads step over the missing position."""
    store = FsRuntimeStore(tmp_path)
    await store.open(runtime_id="uni", limits=Limits())
    store.append_events([make_event(p, f"e{p}") for p in range(1, 11)])
    await store.sync()
    await store.close()
    active = sorted((tmp_path / "events").glob("*.jsonl"))[-1]
    lines = active.read_bytes().splitlines(keepends=True)
    del lines[4]  # position 5
    active.write_bytes(b"".join(lines))
    reopened = FsRuntimeStore(tmp_path)
    opened = await reopened.open(runtime_id="uni", limits=Limits())
    assert "store.log_gap" in [d.code for d in opened.diagnostics]
    got = reopened.read_events(0, 20, None) or []
    assert [e.position for e in got] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    await reopened.close()
    again = FsRuntimeStore(tmp_path)  # the repair holds: nothing new to report
    opened = await again.open(runtime_id="uni", limits=Limits())
    assert not {"store.log_gap", "store.record_quarantined"} & {d.code for d in opened.diagnostics}
    assert [e.position for e in again.read_events(0, 20, None) or []] == [
        1,
        2,
        3,
        4,
        6,
        7,
        8,
        9,
        10,
    ]
    await again.close()
