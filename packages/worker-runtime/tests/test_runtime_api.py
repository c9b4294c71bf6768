"""One behavioural suite for every implementation of ``RuntimeAPI``: the same calls give the
same answers whether the Runtime is reached over HTTP (``RuntimeClient`` against a served
Runtime on a real socket), read from its fs-store root (``StoreView``), or called in process.

Each case starts from the same scene, written by a real Runtime: Workers ``a`` and ``b`` (in
that order) and one finished turn on ``a``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

pytest.importorskip("orjson", reason="the fs-store extra is not installed")
pytest.importorskip("httpx_sse", reason="the event-stream extra is not installed")

from worker_runtime import (
    CreateWorkerRequest,
    CursorMalformed,
    InputRequest,
    InvalidInput,
    Limits,
    Runtime,
    RuntimeAPI,
    UnsupportedOperation,
    WorkerNotFound,
)
from worker_runtime.client import RuntimeClient
from worker_runtime.store.fs import FsRuntimeStore
from worker_runtime.store.view import StoreView

from .servers import TOKEN, serve

pytestmark = pytest.mark.anyio

RUNTIME_ID = "rt-api"


CASES = ["client", "view", "runtime"]


@dataclass
class Case:
    api: RuntimeAPI
    read_only: bool
    a: str
    b: str


async def _scene(rt: Runtime) -> tuple[str, str]:
    a = (await rt.create_worker(CreateWorkerRequest(name="a"))).worker_id
    b = (await rt.create_worker(CreateWorkerRequest(name="b"))).worker_id
    await rt.send_input(rt.ref(a), InputRequest(content="hello there"))
    with anyio.fail_after(10):
        while (await rt.get_worker(rt.ref(a))).status != "idle":
            await anyio.sleep(0.01)
    return a, b


@asynccontextmanager
async def _case(kind: str, root: Path) -> AsyncIterator[Case]:
    store = FsRuntimeStore(root, fsync="never")
    limits = Limits(shutdown_grace_s=0.2)
    async with AsyncExitStack() as stack:
        rt = await stack.enter_async_context(
            Runtime(runtime_id=RUNTIME_ID, store=store, limits=limits)
        )
        a, b = await _scene(rt)
        if kind == "view":
            await rt.close()
            yield Case(await StoreView.open(root), True, a, b)
        elif kind == "client":
            url = await stack.enter_async_context(serve(rt))
            client = await stack.enter_async_context(RuntimeClient(url, token=TOKEN))
            yield Case(client, False, a, b)
        else:
            yield Case(rt, False, a, b)


@pytest.fixture(params=CASES)
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Case]:
    async with _case(request.param, tmp_path / "store") as c:
        yield c


async def _wait_idle(api: RuntimeAPI, worker_id: str) -> None:
    with anyio.fail_after(10):
        while (await api.get_worker(worker_id)).status != "idle":
            await anyio.sleep(0.01)


async def test_summary_names_the_runtime_and_counts_its_workers(case: Case) -> None:
    """summary() carries the Runtime's id and its Worker counts; diagnostics() lists the
    Runtime's own, which a read-only view of a store cannot have (unsupported_operation)."""
    summary = await case.api.summary()
    assert summary.runtime_id == RUNTIME_ID
    assert (summary.counts.workers, summary.counts.idle) == (2, 2)
    if case.read_only:
        with pytest.raises(UnsupportedOperation):
            await case.api.diagnostics(limit=5)
    else:
        assert isinstance(await case.api.diagnostics(limit=5), list)


async def test_workers_list_in_creation_order_with_paging_and_filters(case: Case) -> None:
    """list_workers pages in creation order (limit/after), filters by status, and refuses an
    unknown status or an ``after`` that is no Worker's id with invalid_input."""
    api = case.api
    page = await api.list_workers()
    assert [w.worker_id for w in page.workers] == [case.a, case.b]
    assert all(w.runtime_id == RUNTIME_ID for w in page.workers)
    first = await api.list_workers(limit=1)
    assert ([w.worker_id for w in first.workers], first.next_after) == ([case.a], case.a)
    rest = await api.list_workers(limit=1, after=case.a)
    assert [w.worker_id for w in rest.workers] == [case.b]
    assert (await api.list_workers(status="stopped")).workers == []
    with pytest.raises(InvalidInput):
        await api.list_workers(status="sleeping")
    with pytest.raises(InvalidInput):
        await api.list_workers(after="nobody")


async def test_a_worker_detail_and_an_unknown_worker(case: Case) -> None:
    """get_worker gives the detail (name, status, transcript length, a cursor); an unknown
    worker_id is worker_not_found."""
    detail = await case.api.get_worker(case.a)
    assert (detail.worker_id, detail.name, detail.status) == (case.a, "a", "idle")
    assert detail.transcript_len == 2
    assert detail.overview.turns.completed == 1
    assert detail.last_cursor
    with pytest.raises(WorkerNotFound):
        await case.api.get_worker("nobody")


async def test_transcript_pages(case: Case) -> None:
    """read_transcript pages the transcript (start/limit) with a cursor to continue from; an
    unknown Worker is worker_not_found."""
    page = await case.api.read_transcript(case.a)
    assert [i.role for i in page.items] == ["user", "assistant"]
    assert page.items[0].content == "hello there"
    assert page.total_items == 2
    assert page.cursor
    second = await case.api.read_transcript(case.a, start=1, limit=1)
    assert [i.sequence for i in second.items] == [2]
    assert (await case.api.read_transcript(case.b)).items == []
    with pytest.raises(WorkerNotFound):
        await case.api.read_transcript("nobody")


async def test_commands_act_or_are_unsupported(case: Case) -> None:
    """A writable implementation creates, cancels (nothing in flight) and stops, a repeated
    stop answering the first ack; a read-only one refuses each with unsupported_operation and
    changes nothing."""
    api = case.api
    if case.read_only:
        for call in (
            api.create_worker(),
            api.send_input(case.a, InputRequest(content="no")),
            api.stop_worker(case.a),
            api.cancel(case.a),
            api.list_profiles(),
        ):
            with pytest.raises(UnsupportedOperation):
                await call
        assert len((await api.list_workers()).workers) == 2
        return
    created = await api.create_worker(CreateWorkerRequest(name="c"))
    assert created.name == "c"
    assert created.status == "idle"
    cancel = await api.cancel(created.worker_id, reason="nothing to cancel")
    assert cancel.cancelled_turn_id is None
    stop = await api.stop_worker(created.worker_id, reason="done")
    assert stop.status == "stopped"
    assert (await api.stop_worker(created.worker_id)).cursor == stop.cursor
    assert [p.name for p in await api.list_profiles()]


async def test_events_after_a_cursor(case: Case) -> None:
    """events(worker_id=…, cursor=transcript cursor) yields that Worker's next turn, from
    turn_started to turn_completed, each with a cursor; entering a stream of an unknown Worker
    or with a malformed cursor raises; a read-only view refuses to stream."""
    api = case.api
    if case.read_only:
        with pytest.raises(UnsupportedOperation):
            async with api.events(worker_id=case.a):
                pass
        return
    cursor = (await api.read_transcript(case.a)).cursor
    async with api.events(cursor=cursor, worker_id=case.a) as stream:
        ack = await api.send_input(case.a, InputRequest(content="again"))
        kinds = []
        with anyio.fail_after(10):
            async for event in stream:
                assert event.worker_id == case.a
                assert event.cursor
                kinds.append(event.kind)
                if event.kind == "turn_completed":
                    assert event.turn_id == ack.turn_id
                    break
    assert "turn_started" in kinds
    assert kinds[-1] == "turn_completed"
    await _wait_idle(api, case.a)
    with pytest.raises(WorkerNotFound):
        async with api.events(worker_id="nobody"):
            pass
    with pytest.raises(CursorMalformed):
        async with api.events(cursor="not-a-cursor"):
            pass
