"""Small secrets kept in files of the data directory, outside every database (the access-log
pseudonym key, the password pepper): created once with mode 0600 in a 0700 directory,
race-safe (O_EXCL: a second process uses the first one's), and refused when others can read
them. One place for that decision; the KEK file has its own provider (vault/providers)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class SecretFileError(RuntimeError):
    """The file is unsafe or unreadable: fix its mode or content; retrying will not help."""


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """The secret in `path` (hex), made of `nbytes` random bytes on first use."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_bytes(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read(path)
    try:
        os.write(fd, value.hex().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return value


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(f"{path} can be read by others (mode {stat.filemode(mode)}); "
                              "run: chmod 600 " + str(path))
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise SecretFileError(f"{path} does not hold a hex secret") from None
