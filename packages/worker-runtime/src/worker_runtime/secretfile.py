"""Writing a secret (a generated token) to a file without trusting the filesystem around it.

The directory must be a real directory (not a symlink) owned by this user and writable by no
one else; otherwise another local user could plant a symlink or swap the file. The secret is
written to a fresh temporary file (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600) and renamed
into place, so a symlink at the final path is replaced, never followed, and a reader never sees
a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

__all__ = ["SecretFileError", "SecretFileExistsError", "ensure_private_dir", "write_secret"]


class SecretFileError(Exception):
    """The secret's directory or file is unsafe or cannot be written; the message says which
    and why (it names the path: it is for the operator, never for a client)."""


class SecretFileExistsError(SecretFileError, FileExistsError):
    """The file is already there and the caller asked not to replace it."""


def ensure_private_dir(directory: Path, *, create: bool = True) -> None:
    """Check (and, with ``create``, make with mode 0700) a directory that only this user can
    write to; raise :class:`SecretFileError` otherwise."""
    if create:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SecretFileError(f"cannot create {directory} ({exc.strerror})") from None
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise SecretFileError(f"cannot inspect {directory} ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SecretFileError(f"{directory} is not a directory (a symlink is refused)")
    if info.st_uid != os.getuid():
        raise SecretFileError(
            f"{directory} is owned by another user; refusing to put a secret in it"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SecretFileError(
            f"{directory} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); refusing to put a secret in it"
        )


def write_secret(path: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` to ``path`` (mode 0600) in a private directory (see
    :func:`ensure_private_dir`). With ``replace`` an existing file (or symlink) at ``path`` is
    replaced atomically; without it an existing one is left alone and the call fails."""
    directory = path.parent
    ensure_private_dir(directory)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise SecretFileError(f"cannot create a file in {directory} ({exc.strerror})") from None
    try:
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data) :]
            os.fchmod(fd, 0o600)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path, follow_symlinks=False)
            except FileExistsError:
                raise SecretFileExistsError(
                    f"{path} already exists; refusing to overwrite it"
                ) from None
    except SecretFileError:
        raise
    except OSError as exc:
        raise SecretFileError(f"cannot write {path} ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
