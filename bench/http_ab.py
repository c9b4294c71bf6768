"""A/B benchmark of the command path: this checkout's ``yoi-runtime`` beside another's.

``bench/http.py`` compares the Runtime with a raw ASGI app; its ratio moves by up to ±15 %
with the machine's state, as the raw app gains more than the Runtime when the machine runs
faster. To judge a change to the Runtime itself, this runs two Runtime processes side by
side, this checkout's (A) and ``--other``'s (B, its ``packages/worker-runtime/src`` first on
``PYTHONPATH``; the same environment otherwise), and loads them with input acks at one
concurrency in alternating slices (A then B, then B then A, ``--rounds`` times), so that both
see the same machine state. Both run with the same ``PYTHONHASHSEED``: without it, two
processes of the same code differed by up to 12 % on the development machine, with it within
about 3 %. ``--other`` left out runs this checkout twice (an A/A run: the noise floor to judge
an A/B run by).

Reported: the median over rounds of each side's acks/s and server CPU per ack (user and
system, where ``/proc`` exists), and B against A (the median of the per-round ratios).
Run: ``uv run python bench/http_ab.py --other ../other-checkout`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path
from typing import Any

# bench/http.py is named like the standard library's http package: keep bench/ off the front
# of sys.path (see there), then import its load client by module name.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

from _load import runtime_command, server_process  # noqa: E402
from _report import Row, report  # noqa: E402


def _load_module() -> Any:
    """bench/http.py's load client and steps (its module name would shadow ``http``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_http", _HERE / "http.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_bench_http"] = module
    spec.loader.exec_module(module)
    return module


async def main(other: Path | None, rounds: int, slice_s: float, concurrency: int) -> None:
    bh = _load_module()
    load, steps = bh.load, bh.input_steps
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the servers inherit it
    os.environ.pop("PYTHONPATH", None)  # A: this checkout, as installed
    src = None
    if other is not None:
        src = other.resolve() / "packages" / "worker-runtime" / "src"
        if not (src / "worker_runtime").is_dir():
            raise SystemExit(f"--other: {other} has no packages/worker-runtime/src")
    with server_process(runtime_command()) as a:
        if src is not None:
            os.environ["PYTHONPATH"] = str(src)
        with server_process(runtime_command()) as b:
            os.environ.pop("PYTHONPATH", None)
            for target in (a, b):  # warm both (imports, first Workers)
                await load(target, concurrency, 1.0, steps)
            rates: dict[str, list[float]] = {"A": [], "B": []}
            cpus: dict[str, list[float]] = {"A": [], "B": []}
            for i in range(rounds):
                order = (("A", a), ("B", b)) if i % 2 == 0 else (("B", b), ("A", a))
                for name, target in order:
                    sample = await load(target, concurrency, slice_s, steps)
                    rates[name].append(sample.rate)
                    if sample.cpu_us is not None:
                        cpus[name].append(sample.cpu_us)
    med = statistics.median
    label = f"B ({other})" if other is not None else "B (this checkout again)"
    rate_ratio = med(b / a for a, b in zip(rates["A"], rates["B"], strict=True))
    rows = [
        Row(f"A: input acks/s, c={concurrency}", med(rates["A"]), "req/s"),
        Row(f"{label}: input acks/s", med(rates["B"]), "req/s", med(rates["A"]), "A"),
        Row("  B/A, the median of the rounds' ratios", rate_ratio * 100, "%"),
    ]
    if cpus["A"] and cpus["B"]:
        cpu_ratio = med(b / a for a, b in zip(cpus["A"], cpus["B"], strict=True))
        rows += [
            Row("A: server CPU per ack", med(cpus["A"]), "µs"),
            Row("B: server CPU per ack", med(cpus["B"]), "µs", med(cpus["A"]), "A"),
            Row("  B/A, the median of the rounds' ratios", cpu_ratio * 100, "%"),
        ]
    report("http_ab", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="the other checkout (B); left out: A/A")
    parser.add_argument("--rounds", type=int, default=12, help="alternating rounds")
    parser.add_argument("--slice", type=float, default=2.0, help="seconds per slice")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.other, args.rounds, args.slice, args.concurrency))
