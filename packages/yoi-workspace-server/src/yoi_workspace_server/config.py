"""The Backend's config file (``--config``, TOML), validated by pydantic models::

    allowed_hosts = ["yoi.example.com"]       # like --allowed-host (top-level keys go first)
    public_url = "https://yoi.example.com"    # like --public-url

    [[remote]]
    runtime_id = "gpu-box"
    display_name = "GPU box"          # optional
    base_url = "http://10.0.0.5:38800"
    token_file = "/etc/yoi/gpu-box.token"   # or token_env = "GPU_BOX_TOKEN"

    [[local_store]]
    root = "/srv/yoi/old-runtime"      # relative: to the config file's directory
    display_name = "Old runtime"       # optional

A file that cannot be read, is not TOML or does not fit these models is a
:class:`ConfigError`: one line naming the place (``remote #1: base_url: …``), exit 2.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker_runtime.cli import StartError
from worker_runtime.models import is_valid_id

from .registry import RemoteRecord
from .settings import EMBEDDED_ID, LocalStore

__all__ = ["Config", "ConfigError", "ConfigFile", "load_config", "read_token"]


class ConfigError(Exception):
    """A bad ``--config`` file: printed as one line, exit 2."""


def _runtime_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError("not a valid id")
    if value == EMBEDDED_ID:
        raise ValueError(f"{EMBEDDED_ID!r} is the embedded runtime's")
    return value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RemoteEntry(_Table):
    runtime_id: Annotated[str, AfterValidator(_runtime_id)]
    display_name: str | None = None
    base_url: str
    token_file: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        if self.token_file is None and self.token_env is None:
            raise ValueError("token_file or token_env is required")
        return self


class LocalStoreEntry(_Table):
    root: Annotated[str, Field(min_length=1)]
    display_name: str | None = None


class ConfigFile(_Table):
    """The whole file."""

    remote: list[RemoteEntry] = []
    local_store: list[LocalStoreEntry] = []
    allowed_hosts: list[Annotated[str, Field(min_length=1)]] = []
    public_url: str | None = None


@dataclass
class Config:
    """A config file's content, its tokens read and its roots resolved."""

    remotes: list[RemoteRecord] = field(default_factory=list)
    local_stores: list[LocalStore] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    public_url: str | None = None


def _where(error: ValidationError) -> str:
    """The first error of ``error`` as one line: ``remote #1: base_url: Field required``."""
    first = error.errors()[0]
    parts: list[str] = []
    for item in first["loc"]:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]} #{item + 1}"
        else:
            parts.append(str(item))
    message = first["msg"].removeprefix("Value error, ")
    return ": ".join([*parts, message]) if parts else message


def load_config(path: Path) -> Config:
    """The config file at ``path``; :class:`ConfigError` for a bad one, ``StartError`` for a
    token file or variable it names that cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read --config ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config is not valid TOML ({exc})") from None
    try:
        file = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"--config: {_where(exc)}") from None
    records = []
    for entry in file.remote:
        token = read_token(
            Path(entry.token_file) if entry.token_file is not None else None,
            entry.token_env,
            f"remote {entry.runtime_id}",
        )
        assert token is not None  # one of the two is set
        records.append(
            RemoteRecord(
                runtime_id=entry.runtime_id,
                display_name=entry.display_name or entry.runtime_id,
                base_url=entry.base_url,
                token=token,
            )
        )
    stores = [LocalStore(path.parent / s.root, s.display_name) for s in file.local_store]
    return Config(records, stores, list(file.allowed_hosts), file.public_url)


def read_token(path: Path | None, env: str | None, what: str) -> str | None:
    """A token from a file (stripped) or an environment variable; ``None`` with neither."""
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StartError(f"cannot read the {what} token file ({exc.strerror})") from None
        if not token:
            raise StartError(f"the {what} token file is empty")
        return token
    if env is not None:
        token = os.environ.get(env, "").strip()
        if not token:
            raise StartError(f"the environment variable {env} is not set or empty")
        return token
    return None
