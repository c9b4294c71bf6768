"""Profiles: which execution backend and model a Worker uses (contract §9, §11).

A profile is chosen by a selector: ``{"kind": "runtime_default"}``, ``{"kind": "builtin",
"name"}`` or ``{"kind": "named", "name"}``. Builtin profiles ship with the Runtime; named
profiles come from a TOML file::

    default = "slow-echo"            # optional: the runtime default profile
    [profiles.slow-echo]
    provider = "echo"
    chunk_delay_ms = 200             # echo only: pause before each delta
    [profiles.gpt]
    provider = "openai"
    model = "gpt-4.1-mini"
    api_key_env = "OPENAI_API_KEY"   # the *name* of the variable; the key is never stored

A profile never holds a credential: ``api_key_env`` names an environment variable that the
execution backend reads at turn time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidInput, ProfileNotFound
from .models import (
    BuiltinProfile,
    NamedProfile,
    ProfileInfo,
    ProfileSelector,
    RuntimeDefaultProfile,
)

__all__ = ["BUILTIN_PROFILES", "KNOWN_PROVIDERS", "Profile", "ProfileError", "Profiles"]

#: Providers a profiles file may name. ``echo`` runs in the core; ``openai``, ``anthropic`` and
#: ``llama_cpp`` each need their extra (the Runtime makes their backends on first use).
KNOWN_PROVIDERS = ("echo", "openai", "anthropic", "llama_cpp")

_NAME = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:\-]+$")]


class ProfileError(InvalidInput):
    """A profiles file or definition does not validate; the message names the file and key."""


class Profile(BaseModel):
    """A resolved profile. ``provider`` picks the execution backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _NAME
    provider: Annotated[str, Field(min_length=1, max_length=64)]
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    base_url: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = None
    system_prompt: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    chunk_delay_ms: Annotated[float, Field(ge=0)] | None = None
    #: The model context budget, in (estimated) tokens: the oldest conversation entries are
    #: left out first; the system prompt and the turn's own input never are.
    context_tokens: Annotated[int, Field(ge=16)] | None = None
    #: How often a transient provider failure (rate limit, timeout, unavailable) is retried
    #: before any output of the turn streamed, with backoff from ``retry_backoff_s``.
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_s: Annotated[float, Field(ge=0, le=60)] = 0.5

    @model_validator(mode="after")
    def _provider_fields(self) -> Profile:
        if self.chunk_delay_ms is not None and self.provider != "echo":
            raise ValueError("chunk_delay_ms is only valid for provider 'echo'")
        if self.provider == "llama_cpp" and self.model is None:
            raise ValueError("model (the path of a GGUF file) is required for provider 'llama_cpp'")
        if self.provider in ("openai", "anthropic") and self.model is None:
            raise ValueError(f"model is required for provider '{self.provider}'")
        return self

    @property
    def info(self) -> ProfileInfo:
        """``{name, provider, model}``: what a client may see (never credentials)."""
        return ProfileInfo(name=self.name, provider=self.provider, model=self.shown_model)

    @property
    def shown_model(self) -> str | None:
        """The model as a client may see it (a GGUF file's name, not its path)."""
        model = (
            self.model if self.model is not None else ("echo" if self.provider == "echo" else None)
        )
        if model is not None and self.provider == "llama_cpp":
            model = model.replace("\\", "/").rsplit("/", 1)[-1]  # the file's name, not its path
        return model


#: The profiles that ship with the Runtime. ``echo`` is a deterministic offline backend that
#: streams the user's input back, for trying the plumbing without a model. It is not a model.
BUILTIN_PROFILES: Mapping[str, Profile] = {
    "echo": Profile(name="echo", provider="echo", model="echo"),
}


class _ProfilesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: _NAME | None = None
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Profiles:
    """The named profiles of a Runtime and its default, resolved by selectors."""

    def __init__(self, named: Iterable[Profile] = (), *, default: str | None = None) -> None:
        self._named: dict[str, Profile] = {}
        for profile in named:
            if profile.name in self._named:
                raise ProfileError(f"profile {profile.name!r} is defined twice")
            self._named[profile.name] = profile
        if default is not None and default not in self._named:
            raise ProfileError(f"the default profile {default!r} is not defined")
        self._default = default

    @property
    def named(self) -> Mapping[str, Profile]:
        return dict(self._named)

    @property
    def default_name(self) -> str | None:
        """The configured default profile, or ``None`` when the default is builtin ``echo``."""
        return self._default

    @classmethod
    def from_toml(cls, path: str | Path) -> Profiles:
        """Load and validate a profiles file; errors name the file and the offending key."""
        path = Path(path)
        label = path.name
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ProfileError(f"{label}: cannot read the profiles file ({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{label}: not valid TOML: {exc}") from None
        return cls.from_mapping(raw, source=label)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str = "profiles") -> Profiles:
        """Build from the parsed shape of a profiles file."""
        try:
            parsed = _ProfilesFile.model_validate(raw)
        except ValidationError as exc:
            raise ProfileError(f"{source}: {_first_error(exc)}") from None
        profiles = []
        for name, body in parsed.profiles.items():
            if not isinstance(body, dict):
                raise ProfileError(f"{source}: profiles.{name}: must be a table")
            provider = body.get("provider")
            if provider not in KNOWN_PROVIDERS:
                raise ProfileError(
                    f"{source}: profiles.{name}.provider: must be one of "
                    f"{', '.join(KNOWN_PROVIDERS)}"
                )
            try:
                profiles.append(Profile.model_validate({**body, "name": name}))
            except ValidationError as exc:
                raise ProfileError(f"{source}: profiles.{name}: {_first_error(exc)}") from None
        try:
            return cls(profiles, default=parsed.default)
        except ProfileError as exc:
            raise ProfileError(f"{source}: {exc.message}") from None

    def resolve(self, selector: ProfileSelector) -> Profile:
        """The profile a selector names, or :class:`ProfileNotFound`."""
        if isinstance(selector, RuntimeDefaultProfile):
            if self._default is None:
                return BUILTIN_PROFILES["echo"]
            return self._named[self._default]
        if isinstance(selector, BuiltinProfile):
            found = BUILTIN_PROFILES.get(selector.name)
            kind = "builtin"
        elif isinstance(selector, NamedProfile):
            found = self._named.get(selector.name)
            kind = "named"
        else:  # pragma: no cover - the selector union is closed
            raise ProfileError("unknown profile selector")
        if found is None:
            raise ProfileNotFound(
                f"no {kind} profile with that name", details={"kind": kind, "name": selector.name}
            )
        return found


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    return f"{key}: {error['msg']}"
