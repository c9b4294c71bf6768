"""Where ``yoi`` connects, and with which token (``docs/cli.md``, "Where it connects").

1. ``--runtime-url URL`` (or ``YOI_RUNTIME_URL``): one ``yoi-runtime`` directly; the token is
   ``--token-file`` (or ``YOI_TOKEN_FILE``), required.
2. ``--backend URL`` (or ``YOI_BACKEND_URL``): that Backend; the token is ``--token-file`` (or
   ``YOI_TOKEN_FILE``), else the local data dir's ``backend.token``.
3. Otherwise the local ``yoi up``: the URL in ``<data-dir>/backend.json`` (written by ``yoi up``
   once it is listening), else ``http://127.0.0.1:8700``; the token in
   ``<data-dir>/backend.token``. The data dir is ``--data-dir``, ``YOI_DATA_DIR``, else ``./.yoi``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ._api import Api, ApiError, BackendApi, RuntimeApi

__all__ = ["DEFAULT_URL", "Target", "connect"]

DEFAULT_URL = "http://127.0.0.1:8700"


@dataclass(frozen=True)
class Target:
    backend: str | None
    runtime_url: str | None
    token_file: str | None
    data_dir: str | None


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ApiError("unauthorized", f"no token file at {path}") from None
    except OSError as exc:
        raise ApiError(
            "unauthorized", f"cannot read the token file {path} ({exc.strerror})"
        ) from None
    if not token:
        raise ApiError("unauthorized", f"the token file {path} is empty")
    if not token.isprintable() or " " in token or not token.isascii():
        raise ApiError("unauthorized", f"the token file {path} does not hold a token")
    return token


def connect(target: Target) -> tuple[Api, str]:
    """The API to talk to, and the one-line hint printed when nothing answers there."""
    token_file = target.token_file or os.environ.get("YOI_TOKEN_FILE") or None
    data_dir = Path(target.data_dir or os.environ.get("YOI_DATA_DIR") or ".yoi")
    runtime_url = target.runtime_url or os.environ.get("YOI_RUNTIME_URL") or None
    if runtime_url:
        if not token_file:
            raise ApiError(
                "unauthorized",
                "--runtime-url needs --token-file (or YOI_TOKEN_FILE): the Runtime's token file",
            )
        hint = "start it with: yoi-runtime --store fs --data-dir DIR"
        return RuntimeApi(runtime_url, _read_token(Path(token_file))), hint
    url = target.backend or os.environ.get("YOI_BACKEND_URL") or None
    hint = "start the Backend with: yoi up"
    if url is None:
        url = _recorded_url(data_dir) or DEFAULT_URL
        if data_dir != Path(".yoi"):
            hint = f"start the Backend with: yoi up --data-dir {data_dir}"
    token_path = Path(token_file) if token_file else data_dir / "backend.token"
    try:
        token: str | None = _read_token(token_path)
    except ApiError:
        if token_file:
            raise
        token = None  # reported as unauthorized by the Backend, after it is known to answer
    api = BackendApi(url, token)
    if token is None:
        api.set_unauthorized_hint(
            f"no token file at {token_path}: run yoi where `yoi up` keeps its data dir, "
            "or pass --data-dir or --token-file"
        )
    return api, hint


def _recorded_url(data_dir: Path) -> str | None:
    try:
        record = json.loads((data_dir / "backend.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = record.get("url") if isinstance(record, dict) else None
    return url if isinstance(url, str) else None
