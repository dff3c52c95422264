"""The tombstone log of a region's key store: an append-only file of shredded accounts
(`<data_dir>/keys/<region>.tombstones`), apart from the key store's database and its backups.

Restoring a key store from a backup taken before a shred brings the account's keyset row back
and loses its tombstone row; this file still names the account, so the key store refuses it on
every read and drops the keyset again at the next start (KeyStore.sync_tombstone_log). Never
restore this file from a backup: it only ever grows.

Bytes and dates only; nothing here encrypts or decrypts.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("sealflow.vault")


@dataclass(frozen=True)
class Tombstone:
    account_id: str
    shredded_at: datetime


def default_tombstone_log(data_dir: Path, region: str) -> Path:
    return (Path(data_dir) / "keys" / f"{region}.tombstones").resolve()


class TombstoneLog:
    """An append-only file of shredded accounts, one `<account id> <ISO time>` line each,
    fsynced before the keyset is deleted. Kept out of key-store backups (never restore it):
    it is what still names the accounts shredded after the backup was taken."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None  # (size, mtime) when _ids was read
        self._ids: frozenset[str] = frozenset()

    def read(self) -> list[Tombstone]:
        """Every tombstone, first line of each account wins. A line that does not parse is
        skipped with a warning: an append torn by a crash, made before its shred started."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        stones: dict[str, Tombstone] = {}
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                account_id, when = line.decode("ascii").split()
                stone = Tombstone(account_id, datetime.fromisoformat(when).astimezone(UTC))
            except ValueError:  # UnicodeDecodeError is one too
                if number < len(lines):  # not a last line still being written
                    log.warning("tombstone log %s: line %d unreadable, skipped", self.path, number)
                continue
            stones.setdefault(stone.account_id, stone)
        return list(stones.values())

    def __contains__(self, account_id: object) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        with self._lock:  # re-read only when the file changed (another process shredded)
            if (st.st_size, st.st_mtime_ns) != self._seen:
                self._ids = frozenset(s.account_id for s in self.read())
                self._seen = (st.st_size, st.st_mtime_ns)
            return account_id in self._ids

    def append(self, stone: Tombstone) -> bool:
        """Records the tombstone durably unless the log has it. True when written."""
        account_id = stone.account_id
        if not account_id.isascii() or not account_id or any(c.isspace() for c in account_id):
            raise ValueError("a tombstone's account id must be ASCII without spaces")
        if account_id in self:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        line = f"{account_id} {stone.shredded_at.astimezone(UTC).isoformat()}\n".encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # after a torn line
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's directory entry must be durable too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return True
