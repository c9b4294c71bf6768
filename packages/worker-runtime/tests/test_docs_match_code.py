"""The drawings and tables that describe the code match the code: the error tree in
`worker_runtime/errors.py`'s docstring, and the tables of `docs/architecture.md`."""

from __future__ import annotations

import inspect
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import worker_runtime
from worker_runtime import errors

ROOT = Path(__file__).resolve().parents[3]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
needs_docs = pytest.mark.skipif(not ARCHITECTURE.exists(), reason="not run from a source tree")

_TREE = "│├└─"


@dataclass
class Drawn:
    name: str
    parent: str | None
    builtins: list[str]
    code: str | None
    status: int | None


def _drawn_tree(doc: str) -> dict[str, Drawn]:
    """The classes of the drawing, with their drawn parent, extra bases, code and status."""
    lines = doc.split("::", 1)[1].strip("\n").splitlines()
    drawn: dict[str, Drawn] = {}
    stack: list[str] = []
    last: Drawn | None = None
    for line in lines:
        if not line.strip():
            if drawn:
                break
            continue
        body = line[4:] if line.startswith("    ") else line  # the literal block's indent
        rest = body.lstrip(_TREE + " ")
        column = len(body) - len(rest)
        words = rest.split()
        if words and words[0][0].islower():  # a wrapped line: the previous entry's code
            assert last is not None, line
            last.code, last.status = words[0], _status(words[1:])
            continue
        match = re.match(r"(\w+)(?: \(([\w, ]+)\))?\s*(.*)$", rest)
        assert match, line
        depth = column // 4
        del stack[depth:]
        tail = match.group(3).split()
        last = Drawn(
            name=match.group(1),
            parent=stack[-1] if stack else None,
            builtins=[b.strip() for b in (match.group(2) or "").split(",") if b.strip()],
            code=tail[0] if tail else None,
            status=_status(tail[1:]),
        )
        drawn[last.name] = last
        stack.append(last.name)
    return drawn


def _status(words: list[str]) -> int | None:
    return int(words[0]) if words and words[0].isdigit() else None


def _classes() -> dict[str, type[errors.WorkerRuntimeError]]:
    found: dict[str, type[errors.WorkerRuntimeError]] = {}
    todo: list[type[errors.WorkerRuntimeError]] = [errors.WorkerRuntimeError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == errors.__name__:
            found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def test_the_error_tree_drawing_is_the_class_tree() -> None:
    """Every class of the error tree is drawn once, under its parent, with its builtin bases,
    its code and (where drawn) its HTTP status; the drawing names no class that is not there."""
    assert errors.__doc__ is not None
    drawn = _drawn_tree(errors.__doc__)
    classes = _classes()
    assert sorted(drawn) == sorted(classes)
    for name, entry in drawn.items():
        cls = classes[name]
        ours = [b for b in cls.__bases__ if issubclass(b, errors.WorkerRuntimeError)]
        assert [b.__name__ for b in ours] == ([entry.parent] if entry.parent else []), name
        others = [b.__name__ for b in cls.__bases__ if b not in ours and b is not Exception]
        assert others == entry.builtins, name
        assert entry.code == cls.code, name
        if entry.status is not None:
            assert entry.status == cls.status, name


def _table(markdown: str, header: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table whose header row starts with ``header``."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and line.strip("| ").startswith(header):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table headed {header!r}")


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@needs_docs
def test_the_module_table_lists_exactly_the_packages_modules() -> None:
    """The module table of docs/architecture.md names each module and subpackage of
    worker_runtime (`x.py`, `x/`) once, and nothing else."""
    rows = _table(ARCHITECTURE.read_text(encoding="utf-8"), "module")
    listed = [name for row in rows for name in _ticked(row[0])]
    package = Path(worker_runtime.__file__).parent
    present = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    present += [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()]
    assert sorted(listed) == sorted(present)


@needs_docs
def test_the_distribution_table_names_the_workspace_packages() -> None:
    """The distribution table of docs/architecture.md names each package of the workspace
    with its import name."""
    rows = _table(ARCHITECTURE.read_text(encoding="utf-8"), "distribution")
    listed = {tuple(_ticked(row[0]) + _ticked(row[1])) for row in rows}
    present = set()
    for project in (ROOT / "packages").glob("*/pyproject.toml"):
        name = tomllib.loads(project.read_text(encoding="utf-8"))["project"]["name"]
        (module,) = [p.name for p in (project.parent / "src").iterdir() if p.is_dir()]
        present.add((name, module))
    assert listed == present


@needs_docs
def test_the_cursor_error_table_gives_each_codes_status() -> None:
    """Each `code (status)` of docs/architecture.md's cursor error table is an error class
    with that HTTP status."""
    rows = _table(ARCHITECTURE.read_text(encoding="utf-8"), "error")
    by_code = {cls.code: cls for cls in _classes().values()}
    assert rows
    for row in rows:
        match = re.fullmatch(r"`(\w+)` \((\d+)\)", row[0])
        assert match, row
        assert by_code[match.group(1)].status == int(match.group(2)), row


@needs_docs
def test_the_runtime_method_table_names_runtime_methods() -> None:
    """Every method the Runtime table of docs/architecture.md names is a method of Runtime."""
    rows = _table(ARCHITECTURE.read_text(encoding="utf-8"), "group")
    named = [m.split("(")[0] for row in rows for m in _ticked(row[1])]
    assert named
    for method in named:
        assert inspect.isfunction(getattr(worker_runtime.Runtime, method, None)), method


@needs_docs
def test_the_docs_stand_alone() -> None:
    """The README and every document under docs/ point to nothing outside the repository: no
    `shared/` path and no SPEC section (the contract is docs/contract.md)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\.\./shared|/shared/|\bSPEC\b", text), page.relative_to(ROOT)
