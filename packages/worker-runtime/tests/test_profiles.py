"""Profiles: selectors, the TOML file, and the runtime default."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_runtime import BUILTIN_PROFILES, ProfileError, Profiles, Runtime
from worker_runtime.models import BuiltinProfile, NamedProfile, RuntimeDefaultProfile

pytestmark = pytest.mark.anyio

GOOD = """
default = "slow-echo"
[profiles.slow-echo]
provider = "echo"
chunk_delay_ms = 200
[profiles.gpt]
provider = "openai"
model = "gpt-4.1-mini"
base_url = "https://example.invalid/v1"
api_key_env = "OPENAI_API_KEY"
system_prompt = "You are terse."
max_tokens = 256
temperature = 0.2
timeout_s = 30
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_profiles_file_loads_and_resolves_selectors(tmp_path: Path) -> None:
    """The example profiles file of contract §9 loads; runtime_default resolves to its
    default, named and builtin selectors to their profiles."""
    profiles = Profiles.from_toml(_write(tmp_path, GOOD))
    assert profiles.resolve(RuntimeDefaultProfile(kind="runtime_default")).name == "slow-echo"
    gpt = profiles.resolve(NamedProfile(kind="named", name="gpt"))
    assert (gpt.provider, gpt.model, gpt.api_key_env) == (
        "openai",
        "gpt-4.1-mini",
        "OPENAI_API_KEY",
    )
    assert profiles.resolve(BuiltinProfile(kind="builtin", name="echo")) is BUILTIN_PROFILES["echo"]
    assert "api_key" not in gpt.info.model_dump_json()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[profiles.a]\nprovider = "echo"\ncolour = "red"\n', "profiles.a: colour: unknown key"),
        ("surprise = 1\n", "surprise: unknown key"),
        ('[profiles.a]\nprovider = "skynet"\n', "profiles.a.provider: must be one of"),
        ('[profiles.a]\nprovider = "openai"\nchunk_delay_ms = 3\n', "profiles.a: "),
        ('[profiles.a]\nprovider = "echo"\ntemperature = "hot"\n', "profiles.a: temperature"),
        ('default = "missing"\n', "the default profile 'missing' is not defined"),
        ("[profiles.a\n", "not valid TOML"),
        ('[profiles."../x"]\nprovider = "echo"\n', "profiles.../x: name"),
        ('[profiles.a]\nprovider = "openai"\napi_key_env = "sk-live-123 secret"\n', "api_key_env"),
        ('[profiles.a]\nprovider = "anthropic"\n', "model is required"),
        ('[profiles.a]\nprovider = "llama_cpp"\n', "model (the path of a GGUF file)"),
        ('[profiles.a]\nprovider = "echo"\nmax_retries = 11\n', "profiles.a: max_retries"),
        ('[profiles.a]\nprovider = "echo"\ncontext_tokens = 0\n', "context_tokens"),
        ('[profiles.a]\nprovider = "echo"\nretry_backoff_s = -1\n', "retry_backoff_s"),
    ],
)
def test_a_bad_profiles_file_names_the_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Every invalid profiles file fails with ProfileError naming the file and the key."""
    with pytest.raises(ProfileError) as info:
        Profiles.from_toml(_write(tmp_path, text))
    assert info.value.message.startswith("profiles.toml: ")
    assert expected in info.value.message
    assert str(tmp_path) not in info.value.message


def test_a_missing_profiles_file_is_a_clear_error(tmp_path: Path) -> None:
    """A profiles file that cannot be read fails with ProfileError naming the file only."""
    with pytest.raises(ProfileError) as info:
        Profiles.from_toml(tmp_path / "absent.toml")
    assert info.value.message.startswith("absent.toml: cannot read")


async def test_the_runtime_default_is_echo_with_an_info_diagnostic() -> None:
    """Without a configured default, runtime_default is builtin echo and an info diagnostic
    says so; with one, no such diagnostic is recorded."""
    async with Runtime(runtime_id="plain") as rt:
        w = await rt.create_worker({"profile": {"kind": "runtime_default"}})
        assert w.profile_info.provider == "echo"
        diagnostics = await rt.diagnostics()
        assert [d.code for d in diagnostics] == ["profile.default_echo"]
        assert diagnostics[0].severity == "info"
        assert (await rt.summary()).diagnostics_count == 1
    async with Runtime(
        runtime_id="configured",
        profiles=Profiles.from_mapping({"default": "e", "profiles": {"e": {"provider": "echo"}}}),
    ) as rt:
        assert await rt.diagnostics() == []
        assert (await rt.create_worker()).profile == "e"


def test_a_local_model_profile_shows_its_file_name_not_its_path() -> None:
    """A llama_cpp profile's public info names the GGUF file, never the directory it is in."""
    from worker_runtime import Profile

    local = Profile(name="g", provider="llama_cpp", model="/srv/models/secret-dir/gemma.gguf")
    assert local.info.model == "gemma.gguf"
    assert "secret-dir" not in local.info.model_dump_json()
