"""What ``yoi`` prints: tables (Rich on a colour TTY, aligned plain text otherwise), JSON
documents, streamed turns, one-line errors, and the exit codes (``docs/cli.md``)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["EXIT", "Renderer", "exit_code_of", "fancy", "print_json", "table", "warn"]

#: The documented exit codes.
EXIT = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "failed": 3,
    "cancelled": 4,
    "interrupted": 5,
    "busy": 6,
    "not_found": 7,
    "ambiguous": 8,
    "auth": 9,
    "unreachable": 10,
    "stopped": 11,
    "sigint": 130,
}

_CODE_EXIT = {
    "unauthorized": "auth",
    "too_many_requests": "auth",
    "worker_not_found": "not_found",
    "runtime_not_found": "not_found",
    "profile_not_found": "not_found",
    "not_found": "not_found",
    "ambiguous_worker": "ambiguous",
    "worker_busy": "busy",
    "worker_stopped": "stopped",
    "unreachable": "unreachable",
    "runtime_unavailable": "unreachable",
    "invalid_input": "usage",
    "limit_too_large": "usage",
    "cursor_malformed": "usage",
    "cursor_unknown": "usage",
}


def exit_code_of(code: str) -> int:
    return EXIT[_CODE_EXIT.get(code, "error")]


def fancy(stream: IO[str]) -> bool:
    """Colour and tables: a TTY, ``NO_COLOR`` unset, ``TERM`` not ``dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def warn(message: str) -> None:
    print(f"yoi: {message}", file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if fancy(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title or None, header_style="bold", box=None, pad_edge=False)
        for h in headers:
            t.add_column(h, overflow="fold")
        for row in cells:
            t.add_row(*row)
        Console().print(t)
        return
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")


class _Spinner:
    """A spinner on stderr (a colour TTY only) until the first delta."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, label: str) -> None:
        if not fancy(sys.stderr) or not fancy(sys.stdout):
            return

        def spin() -> None:
            frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
            i = 0
            while not self._stop.wait(0.08):
                sys.stderr.write(f"\r\x1b[2m{frames[i % len(frames)]} {label}\x1b[0m")
                sys.stderr.flush()
                i += 1

        self._thread = threading.Thread(target=spin, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


class Renderer:
    """Prints a Worker's events: NDJSON with ``--json``; otherwise the text a transcript
    shows (``> input`` lines when ``echo_inputs``, the reply as it streams, ``[error] …``),
    with notes on stderr. :meth:`feed` returns a turn outcome when a turn ends."""

    def __init__(self, *, as_json: bool, echo_inputs: bool, out: IO[str] | None = None):
        self.as_json = as_json
        self.echo_inputs = echo_inputs
        self.out = out or sys.stdout
        self.spinner = _Spinner()
        self._open_line = False
        self._color = fancy(self.out)
        self._tty = _isatty(self.out)
        self._queued: dict[str, str] = {}

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _end_line(self) -> None:
        if self._open_line:
            self._write("\n")
            self._open_line = False

    def _input_line(self, line: str) -> None:
        self._end_line()
        self._write(f"\x1b[1m{line}\x1b[0m\n" if self._color else line + "\n")

    def note(self, text: str) -> None:
        if self.as_json:
            warn(text)
            return
        self.spinner.stop()
        if self._tty:  # stderr shares the screen: start the note on its own line
            self._end_line()
        warn(text)

    def feed(self, kind: str, event: dict[str, Any]) -> str | None:
        data = event.get("data") or {}
        if kind == "reconnecting":
            self.note(f"stream lost ({data.get('message')}); reconnecting")
            return None
        if self.as_json:
            self.spinner.stop()
            self._write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            return _outcome(kind)
        if kind == "output_delta":
            self.spinner.stop()
            text = str(data.get("text", ""))
            if text:
                self._write(text)
                self._open_line = not text.endswith("\n")
        elif kind == "input_accepted" and self.echo_inputs:
            prefix = "> " if data.get("input_kind") == "user" else "[system] "
            line = f"{prefix}{data.get('content', '')}"
            if data.get("queued"):  # shown when its turn starts: conversation order
                self._queued[str(event.get("turn_id"))] = line
                self.note(f"queued: {line}")
            else:
                self._input_line(line)
        elif kind == "turn_started" and self.echo_inputs:
            queued = self._queued.pop(str(event.get("turn_id")), "")
            if queued:
                self._input_line(queued)
        elif kind == "turn_failed":
            self.spinner.stop()
            self._end_line()
            error = data.get("error") or {}
            line = f"[error] {error.get('code')}: {error.get('message')}"
            if self.echo_inputs:
                self._write(line + "\n")
            else:
                warn(f"turn failed: {error.get('code')}: {error.get('message')}")
        elif kind in ("turn_completed", "turn_cancelled", "turn_interrupted"):
            self.spinner.stop()
            self._end_line()
            if kind != "turn_completed":
                warn(f"{kind.replace('_', ' ')}: {data.get('reason', '')}".rstrip(": "))
        elif kind == "worker_stopped":
            self._end_line()
            warn(f"worker stopped: {data.get('reason') or ''}".rstrip(": "))
        elif kind == "diagnostic" and event.get("cursor") is None:
            code = data.get("code")
            if code == "runtime_shutdown":
                self.note("the server is shutting down; the stream resumes when it is back")
            elif code == "runtime_unavailable":
                self.note("the runtime is unavailable; the stream resumes when it is back")
            else:
                self.note(f"{code}: {data.get('message')}")
        return _outcome(kind)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _outcome(kind: str) -> str | None:
    return {
        "turn_completed": "ok",
        "turn_failed": "failed",
        "turn_cancelled": "cancelled",
        "turn_interrupted": "interrupted",
    }.get(kind)


def transcript_lines(items: Sequence[dict[str, Any]]) -> list[str]:
    """The text form of transcript entries: the same text ``attach`` prints."""
    lines = []
    for item in items:
        role, content = item.get("role"), str(item.get("content", ""))
        if role == "user":
            lines.append(f"> {content}")
        elif role == "system":
            lines.append(f"[system] {content}")
        elif role == "error":
            lines.append(f"[error] {content}")
        else:
            lines.append(content)
    return lines
