"""The Backend's ``--config`` file: validated by its models, every mistake one line naming
its place (exit 2 from the CLI), and the flags and file made into ``BackendSettings``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker_runtime.cli import StartError
from yoi_workspace_server.cli import build_parser, settings_of
from yoi_workspace_server.config import ConfigError, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backend.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Remotes (token from a file or a variable), local stores (relative to the file) and
    the trust settings are read, and with the flags make the Backend's settings."""
    (tmp_path / "gpu.token").write_text("gpu-token-0123456789\n")
    monkeypatch.setenv("YOI_TEST_REMOTE_TOKEN", "env-token-0123456789")
    path = _write(
        tmp_path,
        'allowed_hosts = ["yoi.example.com"]\npublic_url = "https://yoi.example.com"\n'
        f'[[remote]]\nruntime_id = "gpu"\ndisplay_name = "GPU"\nbase_url = "http://10.0.0.5:1"\n'
        f'token_file = "{tmp_path / "gpu.token"}"\n'
        '[[remote]]\nruntime_id = "cpu"\nbase_url = "http://10.0.0.6:1"\n'
        'token_env = "YOI_TEST_REMOTE_TOKEN"\n'
        '[[local_store]]\nroot = "old"\ndisplay_name = "Old"\n',
    )
    config = load_config(path)
    assert [(r.runtime_id, r.display_name, r.token) for r in config.remotes] == [
        ("gpu", "GPU", "gpu-token-0123456789"),
        ("cpu", "cpu", "env-token-0123456789"),
    ]
    assert [(s.root, s.display_name) for s in config.local_stores] == [(tmp_path / "old", "Old")]
    args = build_parser().parse_args(
        ["--data-dir", str(tmp_path / "d"), "--allowed-host", "b.test", "--local-store", "x"]
    )
    settings = settings_of(args, "browser-token-0123456789", config)
    assert settings.allowed_hosts == ("yoi.example.com", "b.test")
    assert settings.public_url == "https://yoi.example.com"
    assert [s.root for s in settings.local_stores] == [tmp_path / "old", Path("x")]
    assert [r.runtime_id for r in settings.remotes] == ["gpu", "cpu"]
    assert "0123456789" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "--config: nope: Extra inputs are not permitted"),
        ("allowed_hosts = [\"\"]\n", "--config: allowed_hosts #1: String should have at least"),
        ("public_url = 3\n", "--config: public_url: Input should be a valid string"),
        ("[[remote]]\nbase_url = \"http://h\"\ntoken_env = \"X\"\n",
         "--config: remote #1: runtime_id: Field required"),
        ("[[remote]]\nruntime_id = \"bad id\"\nbase_url = \"http://h\"\ntoken_env = \"X\"\n",
         "--config: remote #1: runtime_id: not a valid id"),
        ("[[remote]]\nruntime_id = \"backend-internal\"\nbase_url = \"http://h\"\n"
         "token_env = \"X\"\n", "--config: remote #1: runtime_id: 'backend-internal' is the"),
        ("[[remote]]\nruntime_id = \"a\"\nbase_url = \"http://h\"\n",
         "--config: remote #1: token_file or token_env is required"),
        ("[[remote]]\nruntime_id = \"a\"\nbase_url = \"http://h\"\ntoken_env = \"X\"\nx = 1\n",
         "--config: remote #1: x: Extra inputs are not permitted"),
        ("[[local_store]]\nroot = \"\"\n", "--config: local_store #1: root: String should"),
        ("local_store = 3\n", "--config: local_store: Input should be a valid list"),
        ("[[remote\n", "--config is not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_its_place(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake is a ConfigError whose one line starts with its place and reason."""
    with pytest.raises(ConfigError) as raised:
        load_config(_write(tmp_path, text))
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_file_or_token(tmp_path: Path) -> None:
    """An unreadable file is a ConfigError; a token file or variable it names that cannot be
    read is a start error (it is not the file's fault)."""
    with pytest.raises(ConfigError, match="cannot read --config"):
        load_config(tmp_path / "missing.toml")
    text = '[[remote]]\nruntime_id = "a"\nbase_url = "http://h"\ntoken_env = "YOI_UNSET_VAR_X"\n'
    with pytest.raises(StartError, match="YOI_UNSET_VAR_X"):
        load_config(_write(tmp_path, text))


def test_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    """``yoi-workspace-server --config`` with a bad file prints one line and exits 2 before
    anything is written."""
    result = subprocess.run(
        [sys.executable, "-m", "yoi_workspace_server.cli", "--bind", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--config", str(_write(tmp_path, "nope = 1\n"))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--config: nope" in result.stderr
    assert not (tmp_path / "data").exists()
