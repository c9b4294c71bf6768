"""Imports point one way across yoi's layers: core ← store ← http/client/cli ← Backend ← yoi.

The layers (docs/architecture.md draws them):

0. the core: ``worker_runtime`` without the modules below (the Runtime, its parts, models,
   events, profiles, execution, the store protocol, the memory store and the projection);
1. the fs store: every other module under ``worker_runtime.store`` (the ``fs-store`` extra);
2. the Runtime's process and its client: ``worker_runtime.http``, ``worker_runtime.client``,
   ``worker_runtime.cli`` and their private parts (``worker_runtime._cli*``, ``_client*``);
3. the Workspace Backend: ``yoi_workspace_server``;
4. the terminal client: ``yoi``.

A module may import its own layer and the layers below it, never one above, whether at the
top of the module or inside a function."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2]
CORE_STORE = {
    "worker_runtime.store",
    "worker_runtime.store.memory",
    "worker_runtime.store._projection",
}

if not (PACKAGES / "yoi-workspace-server" / "src").is_dir():  # an installed wheel, not a checkout
    pytest.skip("needs the repository's packages/ tree", allow_module_level=True)


def layer(module: str) -> int | None:
    """The layer of a module of ours (``None``: not ours)."""
    top = module.split(".")[0]
    if top == "yoi":
        return 4
    if top == "yoi_workspace_server":
        return 3
    if top != "worker_runtime":
        return None
    if module.startswith(("worker_runtime.http", "worker_runtime.cli", "worker_runtime._cli")):
        return 2
    if module.startswith("worker_runtime.store.") and module not in CORE_STORE:
        # A name imported from the store package itself (``from . import X``) stays core.
        parent = module.rsplit(".", 1)[0]
        return (
            0 if parent == "worker_runtime.store" and module[len(parent) + 1 :][:1].isupper() else 1
        )
    return 0


def module_name(path: Path) -> str:
    parts = path.with_suffix("").parts
    name = ".".join(parts[parts.index("src") + 1 :])
    return name.removesuffix(".__init__")


def imported(path: Path, module: str) -> Iterator[str]:
    """Every module (or ``module.Name``) that ``path`` imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                yield node.module or ""
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            if node.module:
                yield ".".join([*base, node.module])
                continue
            for alias in node.names:  # ``from . import x``: a module x, or a name of the package
                candidate = [*base, alias.name]
                src = path.parents[len(module.split(".")) - (path.name != "__init__.py")]
                as_path = src.joinpath(*candidate)
                is_module = as_path.with_suffix(".py").is_file() or as_path.is_dir()
                yield ".".join(candidate if is_module else base)


def test_no_module_imports_a_layer_above_its_own() -> None:
    """No source module of the three distributions imports from a layer above its own."""
    upward = []
    for path in sorted(PACKAGES.glob("*/src/**/*.py")):
        module = module_name(path)
        own = layer(module)
        assert own is not None, module
        for name in imported(path, module):
            other = layer(name)
            if other is not None and other > own:
                upward.append(f"{module} (layer {own}) imports {name} (layer {other})")
    assert upward == []


def test_the_layers_are_what_the_docstring_says() -> None:
    """The classification itself: a module of each layer lands in its layer."""
    assert layer("worker_runtime.runtime") == 0
    assert layer("worker_runtime.store.memory") == 0
    assert layer("worker_runtime.store.fs") == 1
    assert layer("worker_runtime.store.view") == 1
    assert layer("worker_runtime.http._app") == 2
    assert layer("worker_runtime.client") == 2
    assert layer("worker_runtime._clientwire") == 2
    assert layer("worker_runtime._cliargs") == 2
    assert layer("yoi_workspace_server.app") == 3
    assert layer("yoi.cli") == 4
    assert layer("httpx") is None
