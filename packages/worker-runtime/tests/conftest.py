from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import helpers

#: The modules whose behaviour must hold on every store.
BOTH_STORES = {
    "test_turns",
    "test_cancel_stop",
    "test_events",
    "test_workers",
    "test_transcript",
    "test_concurrency",
    "test_execution",
}
HAVE_FS = importlib.util.find_spec("orjson") is not None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in BOTH_STORES and "store_kind" in metafunc.fixturenames:
        kinds = ["memory", "fs"] if HAVE_FS else ["memory"]
        metafunc.parametrize("store_kind", kinds)


@pytest.fixture
def store_kind() -> str:
    return "memory"


@pytest.fixture(autouse=True)
def _runtime_store(store_kind: str, tmp_path: Path) -> Iterator[None]:
    """Point the helpers' open_runtime at a fresh store of the parametrized kind."""
    if store_kind == "fs":
        from worker_runtime.store.fs import FsRuntimeStore

        counter = itertools.count()
        helpers.STORE_FACTORY = lambda: FsRuntimeStore(
            tmp_path / f"store-{next(counter)}", fsync="never"
        )
    else:
        helpers.STORE_FACTORY = None
    yield
    helpers.STORE_FACTORY = None
