"""Backend cursors are a type: wrapping and unwrapping, the browser models that carry them,
and the refusal of a browser model that would let a Runtime cursor through."""

from __future__ import annotations

import json

import anyio
import pytest
from pydantic import BaseModel

from worker_runtime import (
    CursorMalformed,
    CursorUnknown,
    InputAck,
    InputRequest,
    Runtime,
    TranscriptPage,
    WorkerDetail,
    WorkerOverview,
)
from yoi_workspace_server.cursors import (
    BackendCursor,
    BrowserInputAck,
    BrowserTranscriptPage,
    BrowserWorkerDetail,
    browser_model,
    for_browser,
    unwrap_cursor,
    wrap_cursor,
)

RUNTIME_CURSOR = "abcdefgh01234567-2a"


def test_a_cursor_round_trips_and_is_refused_elsewhere() -> None:
    """A wrapped cursor unwraps for its runtime only (another's is cursor_unknown); anything
    that is not a Backend cursor is cursor_malformed."""
    wrapped = wrap_cursor("rt-a", RUNTIME_CURSOR)
    assert wrapped.startswith("b1.")
    assert RUNTIME_CURSOR not in wrapped
    assert unwrap_cursor("rt-a", wrapped) == RUNTIME_CURSOR
    with pytest.raises(CursorUnknown):
        unwrap_cursor("rt-b", wrapped)
    for bad in (RUNTIME_CURSOR, "b1.!!!", "b1." + "A" * 500, wrap_cursor("rt-a", "")):
        with pytest.raises(CursorMalformed):
            unwrap_cursor("rt-a", bad)


async def _models() -> tuple[WorkerDetail, TranscriptPage, InputAck]:
    """A Worker's detail, transcript page and an input ack from a real Runtime (in memory)."""
    async with Runtime(runtime_id="rt-a") as rt:
        w = await rt.create_worker()
        ack = await rt.send_input(w.worker_ref, InputRequest(content="hi"))
        with anyio.fail_after(10):
            while (await rt.get_worker(w.worker_ref)).status != "idle":
                await anyio.sleep(0.01)
        return await rt.get_worker(w.worker_ref), await rt.read_transcript(w.worker_ref), ack


@pytest.mark.anyio
async def test_browser_models_convert_every_cursor_and_keep_the_shape() -> None:
    """A browser model has the library model's JSON shape (the same keys in the same order),
    with every cursor, nested ones too, a Backend cursor of the runtime."""
    detail, page, ack = await _models()
    runtime_cursor = detail.last_cursor
    browser = for_browser("rt-a", detail, BrowserWorkerDetail)
    plain, converted = detail.model_dump(mode="json"), browser.model_dump(mode="json")
    assert json.dumps(list(plain)) == json.dumps(list(converted))
    assert converted["last_cursor"] == converted["overview"]["last_cursor"]
    assert unwrap_cursor("rt-a", converted["last_cursor"]) == runtime_cursor
    assert {k: v for k, v in converted.items() if k not in ("last_cursor", "overview")} == {
        k: v for k, v in plain.items() if k not in ("last_cursor", "overview")
    }
    text = json.dumps(for_browser("rt-a", page, BrowserTranscriptPage).model_dump(mode="json"))
    assert page.cursor not in text
    assert text.count('"b1.') == 3
    with pytest.raises(TypeError):
        for_browser("rt-a", detail, BrowserInputAck)  # not that model's browser model
    assert for_browser("rt-a", ack, BrowserInputAck).cursor.startswith("b1.")


def test_a_browser_model_that_lets_a_runtime_cursor_through_is_refused() -> None:
    """Defining a browser model with a cursor field that is not ``BackendCursor``, or one that
    nests a library model holding a cursor, raises at definition."""
    with pytest.raises(TypeError, match="BackendCursor"):

        @browser_model
        class LeakyAck(InputAck):
            pass  # inherits ``cursor: str``

    class Nested(BaseModel):
        overview: WorkerOverview

    with pytest.raises(TypeError, match="browser model"):

        @browser_model
        class Wrapper(Nested):
            pass

    class Fine(BaseModel):
        cursor: BackendCursor

    assert browser_model(Fine) is Fine
