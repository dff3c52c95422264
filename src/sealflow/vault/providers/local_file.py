"""The default key provider (X1: nothing else to install): the region's key-encryption key is
a Tink AEAD keyset kept in clear JSON in a local file that only its owner may read.

- First run: the file is created with mode 0600 (os.open with O_CREAT | O_EXCL, so an
  existing file is never overwritten and a concurrent start cannot create it twice).
- Every load checks the mode: if group or others have any access, sealflow refuses to start
  (`KeyFileInsecure`, naming the file and its mode).
- Version n is the n-th key of the keyset (rotation appends, keys are never removed), so
  versions only grow. Retiring a version disables its key (and every older one): Tink no
  longer decrypts with it.
- Several processes may share the file (a server and `sealflow keys rotate`): changes are
  written to a new 0600 file renamed over the old one under an exclusive lock, and a provider
  reloads the file whenever it changed on disk, so a rotation made elsewhere is seen at once.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sealflow.vault._aead import Keyset
from sealflow.vault.errors import KeyFileInsecure, KeyVersionError

_FILE_MODE = 0o600


class LocalFileProvider:
    """A KEK in a local Tink keyset file. Safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._keyset: Keyset | None = None
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._create_if_missing()
        with self._lock:
            self._current()

    # -- KeyProvider -----------------------------------------------------------------------
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        with self._lock:
            keyset = self._current()
        return keyset.encrypt(plaintext, aad)

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        with self._lock:
            keyset = self._current()
        return keyset.decrypt(ciphertext, aad)

    @property
    def version(self) -> int:
        with self._lock:
            keyset = self._current()
        return keyset.key_ids.index(keyset.primary_key_id) + 1

    def rotate(self) -> int:
        with self._exclusive() as keyset:
            rotated = keyset.with_new_primary()
            self._write(rotated)
        return len(rotated.key_ids)

    def retire(self, version: int) -> None:
        with self._exclusive() as keyset:
            ids = keyset.key_ids
            current = ids.index(keyset.primary_key_id) + 1
            if not 1 <= version < current:
                raise KeyVersionError(
                    f"cannot retire KEK version {version} of {self.path}: "
                    f"versions 1 to {current - 1} can be retired (current is {current})"
                )
            for key_id in ids[:version]:
                if keyset.is_enabled(key_id):
                    keyset = keyset.with_key_disabled(key_id)
            self._write(keyset)

    def describe(self) -> dict[str, object]:
        with self._lock:
            keyset = self._current()
        ids = keyset.key_ids
        return {
            "kind": "local_file",
            "path": str(self.path),
            "version": ids.index(keyset.primary_key_id) + 1,
            "versions": len(ids),
            "retired": [n for n, key_id in enumerate(ids, 1) if not keyset.is_enabled(key_id)],
        }

    # -- the file --------------------------------------------------------------------------
    def _create_if_missing(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:
            return
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(Keyset.generate().to_json())
            f.flush()
            os.fsync(f.fileno())

    def _current(self) -> Keyset:
        """The keyset, reloaded if the file changed on disk. Call with self._lock held."""
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)
        if self._keyset is None or stamp != self._stamp:
            self._check_mode(st)
            self._keyset = Keyset.from_json(self.path.read_text(encoding="utf-8"))
            self._stamp = stamp
        return self._keyset

    def _check_mode(self, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileInsecure(
                f"key file {self.path} has mode {mode:04o}: group and others must have no "
                f"access; sealflow refuses to start (run: chmod 600 {self.path})"
            )

    @contextmanager
    def _exclusive(self) -> Iterator[Keyset]:
        """Read-modify-write under a lock shared with other processes."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._lock:
                self._stamp = None  # always re-read under the lock
                yield self._current()
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, keyset: Keyset) -> None:
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(keyset.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._keyset = None  # the next use reloads (and records the new stamp)
