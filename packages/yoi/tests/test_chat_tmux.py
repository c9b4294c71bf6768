"""`yoi chat` in a real terminal: tmux (`send-keys`, `capture-pane`) on a private socket."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._cli_harness import Server, as_json, backend, yoi

TMUX = shutil.which("tmux")
if TMUX is None and os.environ.get("CI"):
    raise RuntimeError("tmux is required in CI: the chat test drives a real terminal")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


class Pane:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        result = subprocess.run(
            [TMUX, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "chat")

    def wait(self, what: Callable[[str], bool], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if what(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never matched:\n{screen}")
            time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Server]]:
    b = backend(tmp_path)
    b.start()
    try:
        yield tmp_path, b
    finally:
        b.stop()


def test_chat_streams_cancels_and_detaches(served: tuple[Path, Server]) -> None:
    """In a real terminal a typed message's reply streams in word by word; Ctrl-C cancels a
    slow turn (the transcript keeps the partial reply); a line typed during a turn is queued
    visibly; Ctrl-D detaches and leaves the Worker idle; history is kept per Worker."""
    root, _ = served
    ref = yoi("new", "--profile", "slow", "--name", "talk", cwd=root).stdout.strip()
    pane = Pane(f"yoi-test-{os.getpid()}")
    env = f"env XDG_STATE_HOME={shlex.quote(str(root / 'state'))} TERM=xterm-256color"
    command = (
        f"{env} {shlex.quote(sys.executable)} -m yoi.cli chat talk; echo CHAT-EXIT=$?; sleep 60"
    )
    pane.tmux("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", "-c", str(root), command)
    try:
        pane.wait(lambda s: "/help for help" in s)
        words = " ".join(f"w{i}" for i in range(12))
        pane.keys(words, "Enter")
        # Streaming: part of the reply is on screen before all of it.
        # a reply line that has begun but not yet reached the last word
        pane.wait(
            lambda s: any(
                line.startswith("w0 w1 w2") and "w11" not in line for line in s.splitlines()
            )
        )
        pane.wait(lambda s: s.count(words) >= 2 and "(running)" not in s)
        long_words = " ".join(f"x{i}" for i in range(25))  # one screen line
        pane.keys(long_words, "Enter")
        pane.wait(lambda s: "x2 " in s.replace(long_words, ""))
        pane.keys("later please", "Enter")
        pane.wait(lambda s: "queued behind the running turn: later please" in s)
        pane.keys("C-c")
        pane.wait(lambda s: "turn cancelled" in s)
        pane.wait(lambda s: s.count("later please") >= 3)  # the queued turn ran and echoed
        items = as_json(yoi("transcript", ref, "--all", "--json", cwd=root))["transcript"]
        partials = [i for i in items["items"] if i.get("partial")]
        assert len(partials) == 1, [(i["role"], i["content"][:30]) for i in items["items"]]
        assert partials[0]["content"].startswith("x0 x1 x2")
        assert "x24" not in partials[0]["content"]
        pane.keys("/transcript", "Enter")
        pane.wait(lambda s: "> later please" in s)
        pane.keys("C-d")
        done = pane.wait(lambda s: "CHAT-EXIT=" in s)
        assert "CHAT-EXIT=0" in done
        assert "detached" in done
        worker = as_json(yoi("workers", "--json", cwd=root))["workers"]
        assert [w["status"] for w in worker if w["name"] == "talk"] == ["idle"]
        history = (root / "state" / "yoi" / "history" / ref).read_text()
        assert "later please" in history
        assert words in history
    finally:
        pane.tmux("kill-server")


def test_ctrl_c_twice_at_an_idle_prompt_leaves(served: tuple[Path, Server]) -> None:
    """At an idle prompt one Ctrl-C warns and a second leaves with exit 0; `/stop` stops the
    Worker and leaves."""
    root, _ = served
    yoi("new", "--name", "quiet", cwd=root)
    pane = Pane(f"yoi-test2-{os.getpid()}")
    command = f"{shlex.quote(sys.executable)} -m yoi.cli chat quiet; echo CHAT-EXIT=$?; sleep 60"
    pane.tmux(
        "new-session",
        "-d",
        "-s",
        "chat",
        "-x",
        "100",
        "-y",
        "30",
        "-c",
        str(root),
        f"env XDG_STATE_HOME={shlex.quote(str(root / 'st'))} {command}",
    )
    try:
        pane.wait(lambda s: "/help for help" in s)
        pane.keys("C-c")
        pane.wait(lambda s: "Ctrl-C again to leave" in s)
        pane.keys("C-c")
        assert "CHAT-EXIT=0" in pane.wait(lambda s: "CHAT-EXIT=" in s)
    finally:
        pane.tmux("kill-server")
    pane = Pane(f"yoi-test3-{os.getpid()}")
    pane.tmux(
        "new-session",
        "-d",
        "-s",
        "chat",
        "-x",
        "100",
        "-y",
        "30",
        "-c",
        str(root),
        f"env XDG_STATE_HOME={shlex.quote(str(root / 'st'))} {command}",
    )
    try:
        pane.wait(lambda s: "/help for help" in s)
        pane.keys("/stop", "Enter")
        assert "CHAT-EXIT=0" in pane.wait(lambda s: "CHAT-EXIT=" in s)
    finally:
        pane.tmux("kill-server")
    rows = as_json(yoi("workers", "--json", cwd=root))["workers"]
    assert [w["status"] for w in rows if w["name"] == "quiet"] == ["stopped"]


def test_a_tty_gets_colour_and_no_color_gets_plain(served: tuple[Path, Server]) -> None:
    """On a terminal `yoi workers` draws a styled table and `yoi send` streams the reply;
    with NO_COLOR set the same table has no escape codes."""
    root, _ = served
    yoi("new", "--name", "shown", cwd=root)
    py = shlex.quote(sys.executable)
    for no_color in ("", "NO_COLOR=1 "):
        pane = Pane(f"yoi-test4-{os.getpid()}-{len(no_color)}")
        command = (
            f"env {no_color}TERM=xterm-256color {py} -m yoi.cli workers; "
            f"{py} -m yoi.cli send shown 'tty words'; echo DONE=$?; sleep 60"
        )
        pane.tmux(
            "new-session", "-d", "-s", "chat", "-x", "150", "-y", "20", "-c", str(root), command
        )
        try:
            pane.wait(lambda s: "DONE=" in s)
            styled = pane.tmux("capture-pane", "-p", "-e", "-t", "chat")
            assert "DONE=0" in styled
            assert "tty words" in styled.replace("send shown 'tty words'", "")
            header = next(line for line in styled.splitlines() if "WORKER" in line)
            assert ("\x1b[" in header) == (not no_color), header
        finally:
            pane.tmux("kill-server")


CRAWL = '\n[profiles.crawl]\nprovider = "echo"\nchunk_delay_ms = 1500\n'
SPINNER_LABEL = "waiting for the first words"


def test_spinner_shows_until_the_first_delta_on_a_terminal_only(tmp_path: Path) -> None:
    """On a terminal `yoi send` shows a spinner while the first delta is awaited and clears it
    once text streams; with stdout redirected neither the file nor the screen gets a spinner
    byte."""
    b = backend(tmp_path)
    with (tmp_path / "profiles.toml").open("a", encoding="utf-8") as f:
        f.write(CRAWL)
    b.start()
    pane = Pane(f"yoi-test3-{os.getpid()}")
    try:
        yoi("new", "--profile", "crawl", "--name", "slowpoke", cwd=tmp_path)
        yoi_cmd = f"env TERM=xterm-256color {shlex.quote(sys.executable)} -m yoi.cli"
        command = f"{yoi_cmd} send slowpoke 'alpha beta gamma'; echo SEND-EXIT=$?; sleep 60"
        pane.tmux(
            "new-session", "-d", "-s", "chat", "-x", "100", "-y", "20", "-c", str(tmp_path),
            command,
        )  # fmt: skip
        # Before the first delta (1.5 s away): the spinner, and no reply text yet.
        waiting = pane.wait(lambda s: SPINNER_LABEL in s)
        assert "alpha" not in waiting.replace("'alpha beta gamma'", "")
        # Once the first word has streamed, the spinner line is gone while the turn goes on.
        streaming = pane.wait(lambda s: "alpha" in s.replace("'alpha beta gamma'", ""))
        assert "gamma" not in streaming.replace("'alpha beta gamma'", "")
        assert SPINNER_LABEL not in streaming
        done = pane.wait(lambda s: "SEND-EXIT=" in s)
        assert "SEND-EXIT=0" in done
        assert SPINNER_LABEL not in done
        assert "alpha beta gamma" in done

        pane.tmux("kill-server")
        # A server of its own: a session started at once on the dying one can come up empty.
        pane = Pane(f"yoi-test3b-{os.getpid()}")
        out = tmp_path / "out.txt"
        command = (
            f"{yoi_cmd} send slowpoke 'delta epsilon' > {shlex.quote(str(out))}; "
            "echo SEND-EXIT=$?; sleep 60"
        )
        pane.tmux(
            "new-session", "-d", "-s", "chat", "-x", "100", "-y", "20", "-c", str(tmp_path),
            command,
        )  # fmt: skip
        screens = []
        deadline = time.monotonic() + 30
        while "SEND-EXIT=" not in (screens or [""])[-1] and time.monotonic() < deadline:
            screens.append(pane.screen())
            time.sleep(0.05)
        assert "SEND-EXIT=0" in screens[-1]
        assert len(screens) > 10  # the screen was watched all through the slow first delta
        assert not [s for s in screens if SPINNER_LABEL in s]
        assert out.read_bytes() == b"delta epsilon\n"
    finally:
        pane.tmux("kill-server")
        b.stop()
