"""Shared output of the benchmarks: a table on stdout and a JSON file under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline


def report(bench: str, rows: list[Row], out: Path | None = None) -> Path:
    """Print the table and write ``bench/results/<bench>.json``; returns the JSON path."""
    headers = ("measure", "value", "unit", "baseline", "ratio", "target", "met")
    table = [
        (
            r.name,
            f"{r.value:,.1f}",
            r.unit,
            f"{r.baseline:,.1f} ({r.baseline_name})" if r.baseline else "",
            f"{r.ratio:.3f}" if r.ratio is not None else "",
            r.target,
            "" if r.ok is None else ("yes" if r.ok else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    path = out or Path(__file__).parent / "results" / f"{bench}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "bench": bench,
        "at": datetime.now(UTC).isoformat(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")
    return path
