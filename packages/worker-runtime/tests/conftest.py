from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker_runtime import RuntimeStore

from . import helpers

#: The stores a test that takes ``store_kind`` (or a fixture built on it) runs against: the
#: fs store only where its extra is installed.
STORE_KINDS = ["memory", "fs"] if importlib.util.find_spec("orjson") is not None else ["memory"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store the test runs against; taking it runs the test once per kind."""
    kind: str = request.param
    return kind


@pytest.fixture
def store_factory(store_kind: str, tmp_path: Path) -> Callable[[], RuntimeStore | None]:
    """Makes a fresh store of ``store_kind`` on each call (None: the Runtime's memory store);
    fs stores each get their own directory under ``tmp_path``."""
    if store_kind == "memory":
        return lambda: None
    from worker_runtime.store.fs import FsRuntimeStore

    counter = itertools.count()
    return lambda: FsRuntimeStore(tmp_path / f"store-{next(counter)}", fsync="never")


@pytest.fixture
def open_runtime(store_factory: Callable[[], RuntimeStore | None]) -> helpers.OpenRuntime:
    """``helpers.open_runtime`` on a fresh store of ``store_kind``: a test that takes it must
    hold on every store."""

    def bound(**options: Any) -> helpers.RuntimeContext:
        return helpers.open_runtime(store=store_factory(), **options)

    return bound
