"""The terminal client `yoi` against a real `yoi up` and a real `yoi-runtime` (subprocesses)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._cli_harness import Server, as_json, backend, clean_env, runtime, yoi, yoi_popen


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server, Server]]:
    """A Backend (cwd holds its .yoi) with a remote yoi-runtime `gpu` registered through yoi."""
    root = tmp_path_factory.mktemp("site")
    b, r = backend(root), runtime(root / "remote")
    b.start()
    r.start()
    try:
        added = yoi(
            "runtimes",
            "add",
            "gpu",
            r.url,
            "--runtime-token-file",
            str(root / "remote" / "rt" / "runtime.token"),
            "--json",
            cwd=root,
        )
        assert as_json(added)["runtime"]["runtime_id"] == "gpu"
        yield root, b, r
    finally:
        b.stop()
        r.stop()


def test_lists_are_tables_or_json_documents(site: tuple[Path, Server, Server]) -> None:
    """`runtimes`, `profiles` and `workers` print plain aligned tables off a TTY (no colour
    codes) and JSON documents with --json, found through the local data dir."""
    root, _, _ = site
    rts = as_json(yoi("runtimes", "--json", cwd=root))["runtimes"]
    assert {r["runtime_id"]: r["status"] for r in rts} == {
        "backend-internal": "running",
        "gpu": "running",
    }
    text = yoi("runtimes", cwd=root)
    assert text.returncode == 0
    assert text.stdout.split()[:5] == ["RUNTIME", "KIND", "STATUS", "NAME", "REASON"]
    assert "\x1b" not in text.stdout
    names = {p["name"] for p in as_json(yoi("profiles", "--json", cwd=root))["profiles"]}
    assert {"echo", "slow", "broken"} <= names
    remote = as_json(yoi("profiles", "--runtime", "gpu", "--json", cwd=root))["profiles"]
    assert "slow" in {p["name"] for p in remote}
    made = yoi("new", "--name", "lister", cwd=root)
    assert made.returncode == 0, made.stderr
    ref = made.stdout.strip()
    assert ref.startswith("backend-internal/wkr_")
    rows = as_json(yoi("workers", "--json", cwd=root))["workers"]
    row = next(w for w in rows if f"{w['runtime_id']}/{w['worker_id']}" == ref)
    assert row["name"] == "lister"
    assert row["status"] == "idle"
    idle = as_json(yoi("workers", "--status", "stopped", "--json", cwd=root))["workers"]
    assert ref not in {f"{w['runtime_id']}/{w['worker_id']}" for w in idle}
    table = yoi("workers", cwd=root, env=clean_env(NO_COLOR="1"))
    assert ref in table.stdout
    assert "lister" in table.stdout
    assert "\x1b" not in table.stdout


def test_new_send_and_transcript_stream_text_and_ndjson(
    site: tuple[Path, Server, Server],
) -> None:
    """`new TEXT` and `send` stream the reply to stdout (exit 0), `--json` streams the ack then
    one API event per line, and `transcript` prints and pages the entries."""
    root, _, _ = site
    made = yoi("new", "--name", "talker", "hello there", cwd=root)
    assert made.returncode == 0, made.stderr
    assert made.stdout == "hello there\n"
    assert made.stderr.strip().startswith("backend-internal/wkr_")  # the ref: a diagnostic
    sent = yoi("send", "talker", "one two three", cwd=root)
    assert (sent.returncode, sent.stdout) == (0, "one two three\n")
    streamed = yoi("send", "talker", "four five", "--json", cwd=root)
    assert streamed.returncode == 0
    lines = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert set(lines[0]) == {"ack"}
    events = lines[1:]
    assert [e["kind"] for e in events][-1] == "turn_completed"
    assert "".join(e["data"]["text"] for e in events if e["kind"] == "output_delta") == (
        "four five"
    )
    assert all(
        set(e) >= {"cursor", "kind", "runtime_id", "worker_id", "turn_id", "data"} for e in events
    )
    assert yoi("transcript", "talker", cwd=root).stdout.splitlines() == [
        "> hello there",
        "hello there",
        "> one two three",
        "one two three",
        "> four five",
        "four five",
    ]
    page = as_json(yoi("transcript", "talker", "--start", "2", "--limit", "2", "--json", cwd=root))[
        "transcript"
    ]
    assert [i["content"] for i in page["items"]] == ["one two three", "one two three"]
    assert page["next_start"] == 4
    every = as_json(yoi("transcript", "talker", "--all", "--limit", "1", "--json", cwd=root))[
        "transcript"
    ]
    assert [i["sequence"] for i in every["items"]] == [1, 2, 3, 4, 5, 6]
    blank = yoi("send", "talker", "   ", cwd=root)
    assert blank.returncode == 2


def test_exit_codes_are_distinct(site: tuple[Path, Server, Server]) -> None:
    """Busy 6, cancelled 4, failed 3, stopped 11, not found 7 and ambiguous 8 (listing the
    candidates), each with one `code: message` line on stderr and no traceback."""
    root, _, _ = site
    ref = yoi("new", "--profile", "slow", "--name", "sleepy", cwd=root).stdout.strip()
    long_text = " ".join(f"w{i}" for i in range(40))
    running = yoi_popen(["send", ref, long_text], root, subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = as_json(yoi("workers", "--json", cwd=root))["workers"]
            if any(w["status"] == "running" for w in rows if w["name"] == "sleepy"):
                break
        busy = yoi("send", ref, "again", cwd=root)
        assert busy.returncode == 6
        assert busy.stderr.strip().startswith("yoi: worker_busy: ")
        queued = yoi_popen(["send", "--queue", ref, "queued words"], root, subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the queued input is in before the cancel
            rows = as_json(yoi("workers", "--json", cwd=root))["workers"]
            if any(w["queued_inputs"] for w in rows if w["name"] == "sleepy"):
                break
        cancelled = yoi("cancel", ref, cwd=root)
        assert cancelled.returncode == 0
        out, err = running.communicate(timeout=30)
        assert running.returncode == 4, err
        assert out.startswith("w0 ")
        assert "turn cancelled" in err
        q_out, q_err = queued.communicate(timeout=30)
        assert (queued.returncode, q_out) == (0, "queued words\n"), q_err
        assert "queued behind the running turn" in q_err
    finally:
        for p in (running,):
            if p.poll() is None:
                p.kill()
                p.communicate()
    failed = yoi("new", "--profile", "broken", "--name", "doomed", "hi", cwd=root)
    assert failed.returncode == 3, failed.stderr
    assert "turn failed: provider_" in failed.stderr
    assert yoi("stop", ref, cwd=root).returncode == 0
    stopped = yoi("send", ref, "hello", cwd=root)
    assert stopped.returncode == 11
    assert stopped.stderr.startswith("yoi: worker_stopped: ")
    missing = yoi("send", "nobody-by-that-name", "hi", cwd=root)
    assert (missing.returncode, missing.stderr.split(":")[1].strip()) == (7, "worker_not_found")
    assert yoi("transcript", "gpu/wkr_nope", cwd=root).returncode == 7
    assert yoi("workers", "--runtime", "no-such-runtime", cwd=root).returncode == 7
    yoi("new", "--name", "twin", cwd=root)
    yoi("new", "--name", "twin", cwd=root)
    ambiguous = yoi("send", "twin", "hi", cwd=root)
    assert ambiguous.returncode == 8
    assert ambiguous.stderr.count("backend-internal/wkr_") == 2
    assert "(twin)" in ambiguous.stderr
    prefix = yoi("transcript", "wkr_", cwd=root)
    assert prefix.returncode == 8
    for result in (busy, stopped, missing, ambiguous):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_attach_to_a_running_turn_starts_at_its_input(
    site: tuple[Path, Server, Server], tmp_path: Path
) -> None:
    """`attach` with no flag, while a turn runs, prints that turn from its input on (its
    whole reply, not only what comes after the attach), then follows the next turn."""
    root, _, _ = site
    ref = yoi("new", "--profile", "slow", "--name", "midway", cwd=root).stdout.strip()
    words = " ".join(f"m{i}" for i in range(16))
    turn = yoi_popen(["send", ref, words], root, subprocess.PIPE)
    attach = None
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = as_json(yoi("workers", "--json", cwd=root))["workers"]
            if any(w["status"] == "running" for w in rows if w["name"] == "midway"):
                break
        out = (tmp_path / "attach.out").open("w")
        attach = yoi_popen(["attach", "midway"], root, out)
        turn.communicate(timeout=30)
        assert turn.returncode == 0
        assert yoi("send", "midway", "next one", cwd=root).returncode == 0
        expected = f"> {words}\n{words}\n> next one\nnext one\n"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (tmp_path / "attach.out").read_text() == expected:
                break
            time.sleep(0.1)
        attach.send_signal(signal.SIGINT)
        attach.communicate(timeout=20)
        out.close()
        assert (tmp_path / "attach.out").read_text() == expected
    finally:
        for p in (turn, attach):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()


def test_a_worker_is_named_by_ref_prefix_or_name(site: tuple[Path, Server, Server]) -> None:
    """RUNTIME/WORKER_ID, a unique id prefix and a unique name all reach the same Worker,
    on the embedded runtime and on the remote one."""
    root, _, _ = site
    ref = yoi("new", "--runtime", "gpu", "--name", "far-away", cwd=root).stdout.strip()
    assert ref.startswith("gpu/wkr_")
    worker_id = ref.split("/")[1]
    for name in (ref, worker_id[:12], "far-away", f"gpu/{worker_id[:10]}"):
        result = yoi("send", name, "ping", cwd=root)
        assert (result.returncode, result.stdout) == (0, "ping\n"), (name, result.stderr)
    assert yoi("transcript", "far-away", cwd=root).stdout.count("> ping") == 4


def test_runtimes_add_and_rm_manage_remotes(site: tuple[Path, Server, Server]) -> None:
    """`runtimes add` registers a remote (a taken id is refused), `runtimes rm` removes it,
    and removing the embedded runtime is refused."""
    root, _, r = site
    token = str(root / "remote" / "rt" / "runtime.token")
    taken = yoi("runtimes", "add", "gpu", r.url, "--runtime-token-file", token, cwd=root)
    assert taken.returncode == 1
    assert "runtime_exists" in taken.stderr
    assert (
        yoi("runtimes", "add", "gpu2", r.url, "--runtime-token-file", token, cwd=root).returncode
        == 0
    )
    assert "gpu2" in {
        x["runtime_id"] for x in as_json(yoi("runtimes", "--json", cwd=root))["runtimes"]
    }
    assert yoi("runtimes", "rm", "gpu2", cwd=root).returncode == 0
    assert "gpu2" not in yoi("runtimes", cwd=root).stdout
    embedded = yoi("runtimes", "rm", "backend-internal", cwd=root)
    assert embedded.returncode == 1
    assert "unsupported_operation" in embedded.stderr
    no_file = yoi(
        "runtimes", "add", "gpu3", r.url, "--runtime-token-file", "/nonexistent", cwd=root
    )
    assert no_file.returncode == 2


def test_runtimes_add_takes_the_remote_token_as_token_file(
    site: tuple[Path, Server, Server], tmp_path: Path
) -> None:
    """`runtimes add ID URL --token-file F` reads the remote Runtime's token from F, while the
    caller's own token comes from a --token-file before the subcommand or YOI_TOKEN_FILE."""
    root, b, r = site
    remote = str(root / "remote" / "rt" / "runtime.token")
    caller = str(root / ".yoi" / "backend.token")
    assert yoi("runtimes", "add", "tf1", r.url, "--token-file", remote, cwd=root).returncode == 0
    before = yoi(
        "runtimes", "--backend", b.url, "--token-file", caller,
        "add", "tf2", r.url, "--token-file", remote, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert as_json(before)["runtime"]["runtime_id"] == "tf2"
    env = clean_env(YOI_BACKEND_URL=b.url, YOI_TOKEN_FILE=caller)
    by_env = yoi("runtimes", "add", "tf3", r.url, "--token-file", remote, cwd=tmp_path, env=env)
    assert by_env.returncode == 0, by_env.stderr
    top = yoi(
        "--backend", b.url, "--token-file", caller,
        "runtimes", "add", "tf4", r.url, "--runtime-token-file", remote, cwd=tmp_path,
    )  # fmt: skip
    assert top.returncode == 0, top.stderr
    (tmp_path / "wrong").write_text("w" * 40)
    # A wrong remote token is the remote's problem: the Backend registers the runtime and
    # reports it unauthorized, and yoi's own request (with the caller's token) succeeds.
    wrong = yoi("runtimes", "add", "tf5", r.url, "--token-file", str(tmp_path / "wrong"), cwd=root)
    assert wrong.returncode == 0, wrong.stderr
    # The remote is `gpu`, so the poller, once the remote accepted the token and answered its
    # summary, reports `runtime_id_mismatch`; with the wrong token it reports the refusal.
    deadline = time.monotonic() + 30
    while True:
        rows = as_json(yoi("runtimes", "--json", cwd=root))["runtimes"]
        codes = {x["runtime_id"]: {d["code"] for d in x.get("diagnostics") or []} for x in rows}
        checked = [codes[rid] for rid in ("tf1", "tf2", "tf3", "tf4", "tf5")]
        if all(checked) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert checked == [{"remote.runtime_id_mismatch"}] * 4 + [{"remote.auth_failed"}], rows
    missing = yoi("runtimes", "add", "tf6", r.url, cwd=root)
    assert missing.returncode == 2
    assert "--token-file" in missing.stderr
    for rid in ("tf1", "tf2", "tf3", "tf4", "tf5"):
        assert yoi("runtimes", "rm", rid, cwd=root).returncode == 0


def test_unreachable_and_unauthorized(site: tuple[Path, Server, Server], tmp_path: Path) -> None:
    """Nothing listening exits 10 with one line saying how to start the Backend; a wrong or
    missing token exits 9; the environment variables pick the Backend and the token."""
    root, b, _ = site
    nothing = yoi("workers", cwd=tmp_path)
    assert nothing.returncode == 10
    assert nothing.stderr.count("\n") == 1
    assert "yoi up" in nothing.stderr
    elsewhere = yoi("workers", "--backend", "http://127.0.0.1:9", cwd=tmp_path)
    assert elsewhere.returncode == 10
    no_token = yoi("workers", "--backend", b.url, cwd=tmp_path)
    assert no_token.returncode == 9
    assert "token" in no_token.stderr
    (tmp_path / "wrong").write_text("x" * 40)
    wrong = yoi(
        "workers", "--backend", b.url, "--token-file", str(tmp_path / "wrong"), cwd=tmp_path
    )
    assert wrong.returncode == 9
    assert "unauthorized" in wrong.stderr
    env = clean_env(YOI_BACKEND_URL=b.url, YOI_TOKEN_FILE=str(root / ".yoi" / "backend.token"))
    assert yoi("workers", "--json", cwd=tmp_path, env=env).returncode == 0
    by_dir = yoi("runtimes", "--data-dir", str(root / ".yoi"), cwd=tmp_path)
    assert by_dir.returncode == 0, by_dir.stderr  # backend.json: the port is not the default
    assert json.loads((root / ".yoi" / "backend.json").read_text())["url"] == b.url
    assert (root / ".yoi" / "backend.json").stat().st_mode & 0o777 == 0o600


def test_runtime_url_talks_to_one_runtime_directly(
    site: tuple[Path, Server, Server], tmp_path: Path
) -> None:
    """With --runtime-url and --token-file the same commands drive one yoi-runtime; Backend
    only commands are refused; no token file is a usage-free auth failure."""
    root, _, r = site
    direct = ["--runtime-url", r.url, "--token-file", str(root / "remote" / "rt" / "runtime.token")]
    rts = as_json(yoi("runtimes", *direct, "--json", cwd=tmp_path))["runtimes"]
    assert [x["runtime_id"] for x in rts] == ["gpu"]
    made = yoi("new", *direct, "--name", "direct", "straight in", cwd=tmp_path)
    assert (made.returncode, made.stdout) == (0, "straight in\n"), made.stderr
    assert yoi("send", *direct, "direct", "more", cwd=tmp_path).stdout == "more\n"
    rows = as_json(yoi("workers", *direct, "--json", cwd=tmp_path))["workers"]
    assert "direct" in {w["name"] for w in rows}
    assert yoi("transcript", *direct, "direct", cwd=tmp_path).stdout.splitlines() == [
        "> straight in",
        "straight in",
        "> more",
        "more",
    ]
    assert "direct" in yoi("workers", "--runtime", "gpu", cwd=root).stdout  # same Worker
    refused = yoi(
        "runtimes",
        *direct,
        "add",
        "x",
        r.url,
        "--runtime-token-file",
        str(root / "remote" / "rt" / "runtime.token"),
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert "unsupported_operation" in refused.stderr
    untokened = yoi("workers", "--runtime-url", r.url, cwd=tmp_path)
    assert untokened.returncode == 9


def test_completion_scripts_and_worker_completion(site: tuple[Path, Server, Server]) -> None:
    """`yoi completion bash|zsh|fish` prints a script, and completing WORKER offers refs and
    names from the Backend."""
    root, _, _ = site
    for shell in ("bash", "zsh", "fish"):
        result = yoi("completion", shell, cwd=root)
        assert result.returncode == 0
        assert "_YOI_COMPLETE" in result.stdout
    yoi("new", "--name", "completable", cwd=root)
    env = clean_env(_YOI_COMPLETE="bash_complete", COMP_WORDS="yoi send compl", COMP_CWORD="2")
    offered = subprocess.run(
        [sys.executable, "-m", "yoi.cli"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "completable" in offered.stdout


def test_hostile_names_are_refused_without_a_request_escaping(
    site: tuple[Path, Server, Server],
) -> None:
    """Path-like, blank or control-character names and runtimes are a typed refusal (usage or
    not found), never a traceback or another route."""
    root, _, _ = site
    for name in ("gpu/../../v1/runtime", "../x", "/", "gpu/", "a\x1b[31m", "%2e%2e"):
        result = yoi("transcript", name, cwd=root)
        assert result.returncode in (2, 7), (name, result.stderr)
        assert result.stderr.startswith("yoi: ")
        assert "Traceback" not in result.stderr
    for runtime_id in ("../api", "a b", "x" * 300):
        result = yoi("workers", "--runtime", runtime_id, cwd=root)
        assert result.returncode in (2, 7), (runtime_id, result.stderr)


def test_the_client_commands_import_lazily(tmp_path: Path) -> None:
    """`--help` loads neither Rich, prompt_toolkit, pydantic, httpx nor the Runtime library,
    and a listing off a TTY loads no Rich either."""
    probe = (
        "import sys\n"
        "from yoi.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = ('rich', 'prompt_toolkit', 'pydantic', 'httpx', 'worker_runtime', 'anyio')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    for args in (["--help"], ["workers"]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=clean_env(),
        )
        assert "LOADED []" in result.stderr, (args, result.stderr)


def test_help_is_usage_and_version(tmp_path: Path) -> None:
    """`--help` of the group and of a command print usage, and bad flags exit 2."""
    assert "attach" in yoi("--help", cwd=tmp_path).stdout
    assert "--from-start" in yoi("attach", "--help", cwd=tmp_path).stdout
    assert yoi("workers", "--status", "sleeping", cwd=tmp_path).returncode == 2
    assert yoi("attach", "x", "--from-start", "--cursor", "c", cwd=tmp_path).returncode in (2, 10)
    assert yoi("--version", cwd=tmp_path).stdout.startswith("yoi ")


def test_attach_resumes_across_backend_restarts(tmp_path: Path) -> None:
    """`attach --from-start` to a remote Worker keeps printing across two SIGKILLs and
    restarts of the Backend mid-turn (same port and data dir): the text it printed equals
    the transcript, with nothing missed or repeated; a `send` to an embedded Worker whose
    turn the kill interrupted exits 5."""
    b, r = backend(tmp_path), runtime(tmp_path / "remote")
    r.start()
    b.start()
    token = str(tmp_path / "remote" / "rt" / "runtime.token")
    attach = None
    try:
        assert (
            yoi(
                "runtimes", "add", "gpu", r.url, "--runtime-token-file", token, cwd=tmp_path
            ).returncode
            == 0
        )
        ref = yoi("new", "-r", "gpu", "-p", "slow", "-n", "steady", "first turn here", cwd=tmp_path)
        assert ref.returncode == 0, ref.stderr
        out = (tmp_path / "attach.out").open("w")
        attach = yoi_popen(["attach", "--from-start", "steady"], tmp_path, out)
        local = yoi("new", "-p", "slow", "-n", "local", cwd=tmp_path).stdout.strip()
        words = " ".join(f"t{i}" for i in range(24))  # 24 * 150 ms: spans both restarts
        direct = ["--runtime-url", r.url, "--token-file", token]
        turn = yoi_popen(["send", *direct, "steady", words], tmp_path, subprocess.PIPE)
        interrupted = yoi_popen(["send", local, words], tmp_path, subprocess.PIPE)
        for _ in range(2):
            time.sleep(1.0)
            b.kill()
            time.sleep(0.3)
            b.start()
        _t_out, t_err = turn.communicate(timeout=60)
        assert turn.returncode == 0, t_err
        _i_out, i_err = interrupted.communicate(timeout=60)
        assert interrupted.returncode == 5, i_err
        assert "turn interrupted" in i_err
        assert yoi("send", "steady", "after the restarts", cwd=tmp_path).returncode == 0
        expected = yoi("transcript", "steady", "--all", cwd=tmp_path).stdout
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (tmp_path / "attach.out").read_text() == expected:
                break
            time.sleep(0.1)
        attach.send_signal(signal.SIGINT)
        _, a_err = attach.communicate(timeout=20)
        out.close()
        printed = (tmp_path / "attach.out").read_text()
        assert printed == expected, a_err
        assert expected.splitlines()[-1] == "after the restarts"
        assert "reconnecting" in a_err
        assert attach.returncode == 130
        r.kill()  # a remote that dies shows as unavailable, with its reason
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rts = as_json(yoi("runtimes", "--json", cwd=tmp_path))["runtimes"]
            if {x["runtime_id"]: x["status"] for x in rts}["gpu"] == "unavailable":
                break
            time.sleep(0.2)
        line = next(x for x in yoi("runtimes", cwd=tmp_path).stdout.splitlines() if "gpu" in x)
        assert "unavailable" in line
        assert "unreachable" in line  # the reason
        listed = yoi("workers", cwd=tmp_path)
        assert listed.returncode == 0
        assert "gpu: " in listed.stderr  # the missing runtime is said on stderr
        assert "steady" not in listed.stdout
        assert (
            yoi("send", "gpu/" + ref.stderr.split("/")[1].strip(), "hi", cwd=tmp_path).returncode
            == 10
        )
        assert yoi("stop", "local", cwd=tmp_path).returncode == 0
        stopped = yoi("attach", "local", cwd=tmp_path, timeout=20)  # nothing left to follow
        assert stopped.returncode == 0
        assert "is stopped" in stopped.stderr
        replay = yoi("attach", "local", "--from-start", cwd=tmp_path, timeout=20)
        assert replay.returncode == 0
        assert replay.stdout.startswith(f"> {words}\n")
        b.stop()
        assert not (tmp_path / ".yoi" / "backend.json").exists()  # removed at a clean exit
    finally:
        if attach is not None and attach.poll() is None:
            attach.kill()
            attach.communicate()
        b.stop()
        r.stop()
