"""The catalog and the checks: lookup by worker_id or WorkerRef, paging, field limits."""

from __future__ import annotations

import pytest

from worker_runtime import (
    InputRequest,
    InvalidInput,
    Limits,
    LimitTooLarge,
    WorkerNotFound,
    WorkerRef,
    WrongRuntime,
)
from worker_runtime._checks import Checks, check_limit, check_start

from .parts import open_parts

pytestmark = pytest.mark.anyio


async def test_a_worker_is_found_by_its_id_or_a_ref_of_this_runtime_only() -> None:
    """get() takes a worker_id or a WorkerRef; a ref of another Runtime is wrong_runtime,
    an unknown id worker_not_found, anything else invalid_input."""
    async with open_parts() as parts:
        w = parts.new_worker()
        assert parts.catalog.get(w.worker_id) is w
        assert parts.catalog.get(w.ref("rt-parts")) is w
        with pytest.raises(WrongRuntime):
            parts.catalog.get(WorkerRef(runtime_id="other", worker_id=w.worker_id))
        with pytest.raises(WorkerNotFound):
            parts.catalog.get("wkr_missing")
        with pytest.raises(InvalidInput):
            parts.catalog.get(42)  # type: ignore[arg-type]


async def test_pages_follow_creation_order_and_filter_by_status() -> None:
    """Pages are in creation order with next_after; status filters; a bad after or status is
    invalid_input and a limit over the maximum limit_too_large."""
    async with open_parts(limits=Limits(max_list_workers=3)) as parts:
        ids = [parts.new_worker().worker_id for _ in range(4)]
        first = parts.catalog.page(status=None, limit=2, after=None)
        assert [s.worker_id for s in first.workers] == ids[:2]
        assert first.next_after == ids[1]
        rest = parts.catalog.page(status="idle", limit=3, after=first.next_after)
        assert ([s.worker_id for s in rest.workers], rest.next_after) == (ids[2:], None)
        assert parts.catalog.page(status="running", limit=None, after=None).workers == []
        with pytest.raises(InvalidInput):
            parts.catalog.page(status="paused", limit=None, after=None)
        with pytest.raises(InvalidInput):
            parts.catalog.page(status=None, limit=None, after="wkr_unknown")
        with pytest.raises(LimitTooLarge):
            parts.catalog.page(status=None, limit=4, after=None)


def test_checks_refuse_what_is_over_a_limit_and_never_clamp() -> None:
    """Page sizes, offsets, content size, names and reasons are checked, never clamped."""
    assert check_limit(None, 100, 50) == 50
    assert check_limit(7, 100, 50) == 7
    for bad in (0, -1, True, "3"):
        with pytest.raises(InvalidInput):
            check_limit(bad, 100, 50)  # type: ignore[arg-type]
    with pytest.raises(LimitTooLarge):
        check_limit(51, 100, 50)
    with pytest.raises(InvalidInput):
        check_start(-1)
    checks = Checks(Limits(max_input_bytes=4, max_name_chars=3))
    checks.content(InputRequest(content="abcd"), field="content")
    with pytest.raises(InvalidInput) as caught:
        checks.content(InputRequest(content="abcdé"), field="content")
    assert caught.value.details == {"field": "content", "max_input_bytes": 4}
    with pytest.raises(InvalidInput):
        checks.name("four")
    assert Checks.reason("  ") is None
    assert Checks.reason(" why ") == "why"
    with pytest.raises(InvalidInput):
        Checks.reason("x" * 1001)
