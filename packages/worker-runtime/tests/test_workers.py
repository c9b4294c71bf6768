"""Worker catalog: create, list, detail, authority and hostile input."""

from __future__ import annotations

import pytest

from worker_runtime import (
    IdempotencyConflict,
    InvalidInput,
    LimitTooLarge,
    ProfileNotFound,
    Runtime,
    RuntimeUnavailable,
    UnsupportedOperation,
    WorkerNotFound,
    WorkerRef,
    WrongRuntime,
)
from worker_runtime.models import is_valid_id

from .helpers import OpenRuntime, create

pytestmark = pytest.mark.anyio

HOSTILE_IDS = ["../x", "..", ".hidden", "a/b", "a\\b", "a\x00b", "", "x" * 121, "é" * 10, "a b"]


async def test_create_list_and_detail_carry_the_workers_authority(
    open_runtime: OpenRuntime,
) -> None:
    """A created Worker has a generated id and a ref {runtime_id, worker_id}; list and detail
    report the same ref, its profile and status."""
    async with open_runtime() as rt:
        w = await rt.create_worker({"name": "Ada"})
        assert w.worker_ref == WorkerRef(runtime_id="rt-test", worker_id=w.worker_id)
        assert w.runtime_id == "rt-test"
        assert is_valid_id(w.worker_id)
        assert w.name == "Ada"
        assert w.status == "idle"
        assert w.profile == "echo"
        assert w.profile_info.model_dump() == {"name": "echo", "provider": "echo", "model": "echo"}
        page = await rt.list_workers()
        assert [s.worker_ref for s in page.workers] == [w.worker_ref]
        assert page.next_after is None
        detail = await rt.get_worker(w.worker_ref)
        assert detail.worker_ref == w.worker_ref
        assert detail.overview.turns.total == 0


async def test_worker_ids_are_unique_and_names_are_not_authority(open_runtime: OpenRuntime) -> None:
    """Two Workers with the same name get different ids, and each is addressed by its id."""
    async with open_runtime() as rt:
        a = await rt.create_worker({"name": "same"})
        b = await rt.create_worker({"name": "same"})
        assert a.worker_id != b.worker_id
        await rt.send_input(a.worker_ref, {"content": "only a", "kind": "system"})
        assert (await rt.get_worker(b.worker_ref)).transcript_len == 0


async def test_a_ref_of_another_runtime_is_wrong_runtime(open_runtime: OpenRuntime) -> None:
    """Every Worker operation rejects a ref whose runtime_id is not this Runtime's."""
    async with open_runtime() as rt:
        w = await rt.create_worker()
        foreign = WorkerRef(runtime_id="elsewhere", worker_id=w.worker_id)
        for call in (
            rt.get_worker(foreign),
            rt.send_input(foreign, {"content": "x"}),
            rt.cancel(foreign),
            rt.stop_worker(foreign),
            rt.read_transcript(foreign),
        ):
            with pytest.raises(WrongRuntime) as info:
                await call
            assert info.value.status == 400
        with pytest.raises(WrongRuntime):
            rt.subscribe(worker=foreign)


async def test_unknown_worker_is_worker_not_found(open_runtime: OpenRuntime) -> None:
    """A well-formed id that names no Worker is worker_not_found (404)."""
    async with open_runtime() as rt:
        with pytest.raises(WorkerNotFound) as info:
            await rt.get_worker(rt.ref("wkr_nope"))
        assert info.value.status == 404


@pytest.mark.parametrize("bad", HOSTILE_IDS)
async def test_hostile_worker_ids_are_invalid_input(open_runtime: OpenRuntime, bad: str) -> None:
    """Ids with dots-first, separators, NUL, spaces, unicode or over 120 chars are refused as
    invalid_input and never looked up."""
    async with open_runtime() as rt:
        with pytest.raises(InvalidInput) as info:
            rt.ref(bad)
        assert info.value.code == "invalid_input"


@pytest.mark.parametrize("bad", [["wkr_x"], None, 7, b"wkr_x"])
async def test_ids_that_are_not_strings_are_invalid_input(
    open_runtime: OpenRuntime, bad: object
) -> None:
    """ref() refuses an id that is not a string (a list, None, a number, bytes) as
    invalid_input, also once the Runtime holds Workers it could look it up among."""
    async with open_runtime() as rt:
        await rt.create_worker()
        with pytest.raises(InvalidInput):
            rt.ref(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["../x", "a/b", ".x", "x" * 121, "a\x00"])
def test_hostile_runtime_ids_are_refused(bad: str) -> None:
    """A Runtime cannot be built with a runtime_id outside the id rule."""
    with pytest.raises(InvalidInput):
        Runtime(runtime_id=bad)


async def test_names_are_untrusted_text(open_runtime: OpenRuntime) -> None:
    """Unicode names are kept verbatim; blank names, control characters and names over the
    limit are invalid_input and create nothing."""
    async with open_runtime() as rt:
        w = await rt.create_worker({"name": "../../etc/passwd ✓ 日本語"})
        assert w.name == "../../etc/passwd ✓ 日本語"
        for bad in ["", "   ", "a\x00b", "line\nbreak", "é" * 201, 42]:
            with pytest.raises(InvalidInput):
                await rt.create_worker({"name": bad})
        assert (await rt.summary()).counts.workers == 1


async def test_create_with_initial_input_starts_a_turn_in_the_same_step(
    open_runtime: OpenRuntime,
) -> None:
    """initial_input is accepted with the create: the Worker's first events are worker_created,
    input_accepted and turn_started."""
    async with open_runtime() as rt:
        w = await rt.create_worker({"initial_input": {"content": "hello there"}})
        assert w.transcript_len == 1
        page = await rt.read_events(worker=w.worker_ref)
        kinds = [e["kind"] for e in page.events][:3]
        assert kinds == ["worker_created", "input_accepted", "turn_started"]


async def test_a_rejected_initial_input_creates_nothing(open_runtime: OpenRuntime) -> None:
    """A create whose initial input is invalid fails and leaves no Worker and no event."""
    async with open_runtime() as rt:
        before = (await rt.read_events(limit=1000)).events
        with pytest.raises(InvalidInput):
            await rt.create_worker({"initial_input": {"content": "  "}})
        with pytest.raises(InvalidInput):
            await rt.create_worker({"initial_input": {"content": "x" * (256 * 1024 + 1)}})
        assert (await rt.summary()).counts.workers == 0
        assert (await rt.read_events(limit=1000)).events == before


async def test_profiles_that_do_not_exist_or_cannot_run_leave_nothing_behind(
    open_runtime: OpenRuntime,
) -> None:
    """An unknown profile is profile_not_found; a profile whose provider has no backend in
    this Runtime is unsupported_operation; neither creates a Worker."""
    from worker_runtime import Profile

    gpt = Profile(name="gpt", provider="in-house", model="gpt-4.1-mini", api_key_env="OPENAI_KEY")
    async with open_runtime(profiles=[gpt]) as rt:
        with pytest.raises(ProfileNotFound):
            await rt.create_worker({"profile": {"kind": "named", "name": "nope"}})
        with pytest.raises(ProfileNotFound):
            await rt.create_worker({"profile": {"kind": "builtin", "name": "gpt"}})
        with pytest.raises(UnsupportedOperation) as info:
            await rt.create_worker({"profile": {"kind": "named", "name": "gpt"}})
        assert info.value.status == 501
        with pytest.raises(InvalidInput):
            await rt.create_worker({"profile": {"kind": "magic"}})
        assert (await rt.summary()).counts.workers == 0


async def test_create_idempotency_returns_the_same_worker(open_runtime: OpenRuntime) -> None:
    """A create repeated with the same idempotency key and body returns the same Worker; with
    another body it is idempotency_conflict."""
    async with open_runtime() as rt:
        a = await rt.create_worker({"name": "x", "idempotency_key": "c1"})
        b = await rt.create_worker({"name": "x", "idempotency_key": "c1"})
        assert a.worker_id == b.worker_id
        with pytest.raises(IdempotencyConflict):
            await rt.create_worker({"name": "y", "idempotency_key": "c1"})
        assert (await rt.summary()).counts.workers == 1


async def test_list_pages_filters_and_bounds(open_runtime: OpenRuntime) -> None:
    """Listing pages in creation order with next_after, filters by status, and refuses limits
    over the maximum and unknown cursors."""
    async with open_runtime() as rt:
        created = [await create(rt) for _ in range(5)]
        await rt.stop_worker(created[1].worker_ref)
        first = await rt.list_workers(limit=2)
        assert [w.worker_id for w in first.workers] == [c.worker_id for c in created[:2]]
        second = await rt.list_workers(limit=2, after=first.next_after)
        third = await rt.list_workers(limit=2, after=second.next_after)
        assert [w.worker_id for w in second.workers + third.workers] == [
            c.worker_id for c in created[2:]
        ]
        assert third.next_after is None
        stopped = await rt.list_workers(status="stopped")
        assert [w.worker_id for w in stopped.workers] == [created[1].worker_id]
        with pytest.raises(LimitTooLarge):
            await rt.list_workers(limit=rt.limits.max_list_workers + 1)
        with pytest.raises(InvalidInput):
            await rt.list_workers(limit=0)
        with pytest.raises(InvalidInput):
            await rt.list_workers(status="sleeping")
        with pytest.raises(InvalidInput):
            await rt.list_workers(after="wkr_unknown")
        counts = (await rt.summary()).counts
        assert (counts.workers, counts.idle, counts.stopped) == (5, 4, 1)


async def test_commands_outside_the_runtime_context_are_runtime_unavailable() -> None:
    """A Runtime that was not started refuses commands with runtime_unavailable."""
    rt = Runtime(runtime_id="cold")
    with pytest.raises(RuntimeUnavailable):
        await rt.create_worker()
