"""``yoi chat``: an interactive session with one Worker (prompt_toolkit).

The prompt stays usable while a reply streams in above it (``patch_stdout``): a line typed
during a turn is sent with ``on_busy=enqueue`` and shown as queued. Ctrl-C cancels the running
turn; at an idle prompt the first Ctrl-C warns and the second leaves; Ctrl-D detaches. The
Worker keeps running either way. History is kept per Worker under
``$XDG_STATE_HOME/yoi/history/<runtime>/<worker>`` (default ``~/.local/state``).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from ._api import Api, ApiError, Ref, StreamState
from ._output import Renderer, transcript_lines, warn

__all__ = ["Chat", "history_path"]

HELP = (
    "type a message and press Enter; while a turn runs, a message is queued\n"
    "/cancel      cancel the running turn (Ctrl-C does too)\n"
    "/stop        stop the Worker for good, then leave\n"
    "/transcript  show the last 20 transcript entries\n"
    "/help        this text\n"
    "Ctrl-D detaches (the Worker keeps running); Ctrl-C twice at an idle prompt leaves"
)


def history_path(ref: Ref) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    # runtime and worker ids are [A-Za-z0-9._:-], never starting with ".": safe names
    return Path(base) / "yoi" / "history" / ref.runtime_id / ref.worker_id


class Chat:
    def __init__(self, api: Api, ref: Ref) -> None:
        self.api = api
        self.ref = ref
        self.runtime = api.runtime(ref.runtime_id)
        self.running = False
        self.queued = 0
        self.stopped = False
        self.partial = ""
        self._lock = threading.Lock()

    def _follow(self, state: StreamState, renderer: Renderer) -> None:
        try:
            for kind, event in self.api.follow(self.ref, state):
                with self._lock:
                    if kind == "turn_started":
                        self.running = True
                        self.queued = max(0, self.queued - 1) if self.queued else 0
                    elif kind in (
                        "turn_completed",
                        "turn_failed",
                        "turn_cancelled",
                        "turn_interrupted",
                    ):
                        self.running = False
                    elif kind == "worker_stopped":
                        self.running = False
                        self.stopped = True
                if kind == "output_delta":
                    self._delta(str((event.get("data") or {}).get("text", "")))
                    continue
                if kind in (
                    "turn_completed",
                    "turn_failed",
                    "turn_cancelled",
                    "turn_interrupted",
                    "worker_stopped",
                ):
                    self._flush()
                if kind == "turn_failed":
                    error = (event.get("data") or {}).get("error") or {}
                    renderer.note(f"turn failed: {error.get('code')}: {error.get('message')}")
                else:
                    renderer.feed(kind, event)
                self._invalidate()
        except ApiError as exc:
            warn(f"{exc.code}: {exc.message} (the stream ended; Ctrl-D to leave)")

    def _delta(self, text: str) -> None:
        """The reply's unfinished line is shown above the prompt (re-drawn as it grows);
        each finished line is printed into the scrollback."""
        with self._lock:
            self.partial += text
            *done, self.partial = self.partial.split("\n")
        for line in done:
            print(line, flush=True)
        self._invalidate()

    def _flush(self) -> None:
        with self._lock:
            rest, self.partial = self.partial, ""
        if rest:
            print(rest, flush=True)

    def _invalidate(self) -> None:
        app = getattr(self, "_app", None)
        if app is not None:
            app.invalidate()

    def _prompt(self) -> str:
        if self.stopped:
            return "(stopped) › "
        if self.running:
            head = f"{self.partial}\n" if self.partial else ""
            return f"{head}(running) › "
        return "› "

    def run(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.patch_stdout import patch_stdout

        detail = self.runtime.get_worker(self.ref.worker_id)
        self.running = detail.get("status") == "running"
        self.stopped = detail.get("status") == "stopped"
        path = history_path(self.ref)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        session: PromptSession[str] = PromptSession(history=FileHistory(str(path)))
        self._app = session.app
        print(
            f"chat with {self.ref} ({detail.get('name') or 'no name'}, "
            f"{detail.get('status')}); /help for help",
            file=sys.stderr,
        )
        state = StreamState(detail.get("last_cursor"))
        armed = False
        with patch_stdout(raw=True):
            renderer = Renderer(as_json=False, echo_inputs=False)
            threading.Thread(target=self._follow, args=(state, renderer), daemon=True).start()
            while True:
                try:
                    line = session.prompt(self._prompt)
                except KeyboardInterrupt:
                    if self.running:
                        armed = False
                        self._command("/cancel")
                        continue
                    if armed:
                        return 0
                    armed = True
                    warn("Ctrl-C again to leave (Ctrl-D detaches)")
                    continue
                except EOFError:
                    warn(f"detached from {self.ref}; the Worker keeps running")
                    return 0
                armed = False
                text = line.strip()
                if not text:
                    continue
                try:
                    if text.startswith("/"):
                        if self._command(text):
                            return 0
                    else:
                        self._send(line)
                except ApiError as exc:
                    warn(f"{exc.code}: {exc.message}")

    def _send(self, text: str) -> None:
        ack = self.runtime.send_input(self.ref.worker_id, {"content": text, "on_busy": "enqueue"})
        if ack.get("queued"):
            with self._lock:
                self.queued += 1
            warn(f"queued behind the running turn: {text}")
        else:
            with self._lock:
                self.running = True
            self._invalidate()

    def _command(self, text: str) -> bool:
        """Run a slash command; True when the chat should end."""
        name = text.split()[0]
        if name == "/cancel":
            ack = self.runtime.cancel(self.ref.worker_id)
            warn("cancelling the turn" if ack.get("cancelled_turn_id") else "no turn is running")
        elif name == "/stop":
            self.runtime.stop_worker(self.ref.worker_id)
            warn(f"stopped {self.ref}")
            return True
        elif name == "/transcript":
            total = int(self.runtime.get_worker(self.ref.worker_id).get("transcript_len") or 0)
            page = self.runtime.read_transcript(
                self.ref.worker_id, start=max(0, total - 20), limit=20
            )
            for line in transcript_lines(page["items"]):
                print(line)
        elif name == "/help":
            print(HELP)
        else:
            warn(f"unknown command {name}; /help lists them")
        return False
