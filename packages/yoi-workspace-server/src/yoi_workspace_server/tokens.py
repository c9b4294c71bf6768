"""The browser token: configured (``--token-file`` / ``--token-env``) or generated once into
``<data-dir>/backend.token`` (0600, in a 0700 directory) and reused on every later start."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "MIN_TOKEN_CHARS",
    "TOKEN_FILE_NAME",
    "TokenError",
    "load_or_create_token",
    "write_secret_file",
]

log = logging.getLogger("yoi_workspace_server.tokens")

TOKEN_FILE_NAME = "backend.token"
#: A configured token shorter than this is refused: the token is the only thing between a
#: network peer and every Worker, so it must not be guessable.
MIN_TOKEN_CHARS = 16


class TokenError(Exception):
    """The token cannot be read or written (the message names no path)."""


def write_secret_file(path: Path, text: str) -> None:
    """Create ``path`` holding ``text``: the parent directory made 0700 if it is new, the file
    created exclusively (``O_EXCL``), never through a symlink (``O_NOFOLLOW``), mode 0600,
    flushed to disk. An existing file is ``FileExistsError``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret_file(path: Path) -> str:
    """The stripped text of ``path``, a regular file opened without following a symlink; one
    that group or others may read is narrowed to 0600 (with a warning)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenError("the token file is not a regular file")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
            log.warning("the browser token file was readable by others; it is now 0600")
        with os.fdopen(os.dup(fd), "r", encoding="utf-8") as f:
            return f.read().strip()
    finally:
        os.close(fd)


def load_or_create_token(data_dir: Path) -> tuple[str, Path]:
    """The token kept in ``<data_dir>/backend.token``, generated at the first start."""
    path = data_dir / TOKEN_FILE_NAME
    for _ in range(2):
        try:
            token = _read_secret_file(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TokenError(f"cannot read the browser token file ({exc.strerror})") from None
        else:
            if len(token) < MIN_TOKEN_CHARS:
                raise TokenError(
                    f"the browser token file holds a token shorter than {MIN_TOKEN_CHARS} "
                    "characters (delete it to have a new one generated)"
                )
            return token, path
        token = secrets.token_urlsafe(32)
        try:
            write_secret_file(path, token + "\n")
        except FileExistsError:
            continue  # another process created it first: read that one
        except OSError as exc:
            raise TokenError(f"cannot write the browser token file ({exc.strerror})") from None
        return token, path
    raise TokenError("the browser token file cannot be created")  # pragma: no cover
