"""Encrypted backups of a region's cell database (D6; S6, S7): take, list, verify, restore,
and the daily schedule with its 14-day limit.

What a backup holds: the cell database only. The key store (`<data_dir>/keys/<region>.keys.
db`: the wrapped account keysets) and its tombstone log (`<region>.tombstones`) are never in
one, and a restore never writes them. So shredding an account's keys makes its data
unreadable in every backup at once (S7, "backups included"), with nothing to re-apply; the
restore still re-applies the tombstone log to the key store (as every start does) for a key
store an operator restored by hand.

The backup key is a key of its own (D6): 32 random bytes in `<data_dir>/keys/backup-<region>.
key` (0600, secret_files), made on the first backup. Not the region's KEK: the KeyProvider
seam has one key per region and wraps account keysets; a backup key kept apart can be copied
off the machine to open backups elsewhere without handing over the key that wraps every
account's keys, and a KEK retirement does not make the backups unreadable.

The plaintext copy is written next to the database (same disk and protection, 0600) and
removed at once: it holds what the database holds, customer data still sealed by account keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from sealflow import backup_format as fmt
from sealflow.audit.records import SYSTEM, Action, Actor
from sealflow.clock import Clock
from sealflow.config import Settings
from sealflow.core.errors import Conflict
from sealflow.db.migrate import upgrade
from sealflow.db.tables import accounts
from sealflow.regions.cells import Cell
from sealflow.secret_files import load_or_create_secret
from sealflow.services import backup_sources as sources
from sealflow.services import subject_erasure_log
from sealflow.services.subject_erasure_log import erasure_log_path
from sealflow.vault.keystore import upgrade_keystore

SUFFIX = ".sfbak"
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
Progress = Callable[[str, int, int], None]  # (phase, done, total)
log = logging.getLogger("sealflow.backups")


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    region: str
    created_at: datetime
    file_bytes: int
    plaintext_bytes: int | None = None
    source: str | None = None
    sha256: str | None = None
    problem: str | None = None  # the header does not read


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    region: str
    backup_created_at: datetime
    shredded_accounts: list[str]  # accounts back in the rows whose keys stay destroyed
    keysets_dropped: int


class BackupBusy(Conflict):
    code = "backup_busy"
    retryable = True


@contextlib.contextmanager
def _region_lock(folder: Path, *, wait: bool) -> Iterator[None]:
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BackupBusy("another backup of this region is being taken; try again when "
                             "it is done") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def backup_key(settings: Settings, region: str, *, create: bool = False) -> bytes:
    path = settings.backup_key_file(region)
    if not create and not path.exists():
        raise fmt.WrongBackupKey(f"region {region} has no backup key at {path} (copy the key "
                                 "file that made the backups there)")
    return load_or_create_secret(path, fmt.KEY_BYTES)


def create_backup(settings: Settings, cell: Cell, clock: Clock, *, actor: Actor,
                  progress: Progress | None = None, wait: bool = True) -> BackupInfo:
    """Takes a backup of the cell's database into `<backup dir>/<region>/<time>.sfbak`. One
    at a time per region across processes (a lock file); `wait=False`: BackupBusy instead
    of waiting for another one to finish."""
    region = cell.region
    url = settings.database_url(region)
    kind = sources.source_kind(url)
    key = backup_key(settings, region, create=True)
    folder = settings.backup_dir(region)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _region_lock(folder, wait=wait):
        return _create(settings, cell, clock.now().astimezone(UTC), key, kind, url, folder,
                       actor, progress)


def _create(settings: Settings, cell: Cell, now: datetime, key: bytes, kind: str, url: str,
            folder: Path, actor: Actor, progress: Progress | None) -> BackupInfo:
    region = cell.region
    work = _work_dir(settings, url)
    for stale in [*work.glob(f".{region}-backup-*.tmp*"), *folder.glob(".*.partial")]:
        stale.unlink(missing_ok=True)  # left by a run that died (we hold the region's lock)
    final = _free_name(folder, now)
    plain = work / f".{region}-backup-{secrets.token_hex(8)}.tmp"
    partial = folder / f".{final.name}.partial"
    try:
        sources.copy_database(url, plain, pg_dump=settings.backups.pg_dump,
                              progress=_phase(progress, "copy"))
        size, digest = _measure(plain)
        schema = sources.schema_revision(plain) if kind == "sqlite" else None
        sources.new_private_file(partial)
        with plain.open("rb") as source, partial.open("wb") as out:
            header = fmt.write_backup(
                source, out, backup_key=key, region=region, created_at=now.isoformat(),
                source_kind=kind, plaintext_bytes=size, sha256=digest,
                chunk_bytes=settings.backups.chunk_bytes, schema=schema,
                progress=_bytes_phase(progress, "encrypt", size))
            out.flush()
            os.fsync(out.fileno())
        # The record and the file appear together (A2): no record, no backup.
        with cell.write() as conn:
            cell.audit.record(conn, account_id=None, actor=actor, action=Action.BACKUP_TAKEN,
                              target=f"backup:{final.name}", at=now,
                              details={"plaintext_bytes": size, "sha256": digest,
                                       "source": kind, "key_id": header.key_id})
            os.replace(partial, final)
            _fsync_dir(folder)
    finally:
        sources.remove_copy(plain)
        partial.unlink(missing_ok=True)
    return BackupInfo(final, region, now, final.stat().st_size, size, kind, digest)


class BackupJob:
    """The housekeeping entry (bootstrap): runs `scheduled_backups` in a thread of its own so
    a large copy never stalls the server's event loop; one run per region at a time."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._threads: dict[str, threading.Thread] = {}

    def __call__(self, cell: Cell) -> int:
        """1 when a run started, 0 when the region's previous run is still going."""
        running = self._threads.get(cell.region)
        if running is not None and running.is_alive():
            return 0
        thread = threading.Thread(target=self._run, args=(cell,), daemon=True,
                                  name=f"sealflow-backup-{cell.region}")
        self._threads[cell.region] = thread
        thread.start()
        return 1

    def _run(self, cell: Cell) -> None:
        try:
            scheduled_backups(cell, settings=self.settings, clock=self.clock)
        except BackupBusy:
            pass  # the operator's `sealflow backup create` is running: next minute
        except Exception:
            log.exception("scheduled backup of region %s failed", cell.region)

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self._threads.values()):
            thread.join(timeout)


def list_backups(settings: Settings, region: str) -> list[BackupInfo]:
    """The region's backups, oldest first, from their headers (nothing decrypted)."""
    folder = settings.backup_dir(region)
    if not folder.is_dir():
        return []
    found = [_info(path, region) for path in folder.glob(f"*{SUFFIX}") if path.is_file()]
    return sorted(found, key=lambda b: (b.created_at, b.path.name))


def verify_backup(settings: Settings, path: Path, *, region: str | None = None,
                  progress: Progress | None = None) -> fmt.Header:
    """Decrypts and checks every chunk and the plaintext hash, writing nothing."""
    with _open(path) as stream:
        header, aad = fmt.read_header(stream)
        data_key = _data_key(settings, header, region or header.region)
        for _chunk in fmt.read_chunks(stream, header, aad, data_key,
                                      _bytes_phase(progress, "verify", header.plaintext_bytes)):
            pass
    return header


def restore_backup(settings: Settings, cell: Cell, clock: Clock, path: Path, *,
                   actor: Actor, progress: Progress | None = None) -> RestoreResult:
    """Verifies the whole file while decrypting it to a temporary file, then (the database
    unused) replaces the database, migrates it, re-applies the tombstones and records the
    restore in the restored database. Any failure leaves the database as it was."""
    region = cell.region
    url = settings.database_url(region)
    kind = sources.source_kind(url)
    work = _work_dir(settings, url)
    restored = work / f".{region}-restore-{secrets.token_hex(8)}.tmp"
    previous: Path | None = None
    try:
        with _open(path) as stream:
            header, aad = fmt.read_header(stream)
            data_key = _data_key(settings, header, region)
            sources.new_private_file(restored)
            with restored.open("wb") as out:
                for chunk in fmt.read_chunks(stream, header, aad, data_key, _bytes_phase(
                        progress, "decrypt", header.plaintext_bytes)):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        # Every chunk authenticated the header: what it says can now be trusted.
        if header.source != kind:
            raise fmt.BackupError(f"the backup is of a {header.source} database; region "
                                  f"{region} uses {kind}")
        if kind == "sqlite":
            sources.check_sqlite_copy(restored)
        with sources.exclusive(url, cell.engine):
            previous = sources.put_back(url, restored, pg_restore=settings.backups.pg_restore)
        try:
            result = _after_restore(cell, clock, path, header, actor,
                                    erasure_log_path(settings.data_dir, cell.region))
        except BaseException:
            cell.engine.dispose()
            sources.undo(url, previous)
            previous = None
            raise
    finally:
        sources.remove_copy(restored)
        if previous is not None:
            previous.unlink(missing_ok=True)
    return result


def _after_restore(cell: Cell, clock: Clock, path: Path, header: fmt.Header,
                   actor: Actor, erasure_log: Path) -> RestoreResult:
    upgrade(cell.engine)
    upgrade_keystore(cell.keystore_engine)  # a fresh machine: the key store may be new
    # As at every start (bootstrap.migrate_all): the tombstone log, never restored, still
    # names every shredded account; keysets a hand-restored key store revived are dropped.
    dropped = cell.keystore.sync_tombstone_log()
    # Likewise the erasure log (never restored either): people erased after the backup was
    # taken are erased again before anything can read them.
    erased = subject_erasure_log.reapply(cell, clock, erasure_log)
    with cell.read() as conn:
        ids = list(conn.execute(select(accounts.c.id)).scalars())
    shredded = [i for i in ids if cell.keystore.is_shredded(i)]
    created = datetime.fromisoformat(header.created_at)
    with cell.write() as conn:
        cell.audit.record(conn, account_id=None, actor=actor, action=Action.BACKUP_RESTORED,
                          target=f"backup:{path.name}", at=clock.now(),
                          details={"backup_created_at": header.created_at,
                                   "sha256": header.sha256, "shredded_accounts": len(shredded),
                                   "keysets_dropped": dropped, "erased_again": erased})
    return RestoreResult(path, cell.region, created, shredded, dropped)


def prune_backups(settings: Settings, cell: Cell, clock: Clock) -> int:
    """Deletes the region's backups older than backups.keep_days (at most 14), each with an
    audit record in the same transaction. Returns how many went."""
    now = clock.now()
    limit = now - timedelta(days=settings.backups.keep_days)
    removed = 0
    for info in list_backups(settings, cell.region):
        if info.created_at >= limit:
            continue
        with cell.write() as conn:
            cell.audit.record(conn, account_id=None, actor=SYSTEM, action=Action.BACKUP_DELETED,
                              target=f"backup:{info.path.name}", at=now,
                              details={"created_at": info.created_at.isoformat(),
                                       "keep_days": settings.backups.keep_days})
            info.path.unlink(missing_ok=True)
        removed += 1
    return removed


def scheduled_backups(cell: Cell, *, settings: Settings, clock: Clock) -> int:
    """Housekeeping (every minute): deletes expired backups, then takes one when the newest
    is older than backups.every_hours. Returns files deleted plus backups taken."""
    done = prune_backups(settings, cell, clock)
    if not settings.backups.scheduled:
        return done
    newest = max((b.created_at for b in list_backups(settings, cell.region) if not b.problem),
                 default=None)
    if newest is None or clock.now() - newest >= timedelta(hours=settings.backups.every_hours):
        create_backup(settings, cell, clock, actor=SYSTEM, wait=False)
        done += 1
    return done


# -- helpers ---------------------------------------------------------------------------------
def _data_key(settings: Settings, header: fmt.Header, region: str) -> bytes:
    if header.region != region:  # before looking for a key the region may not have
        raise fmt.WrongRegion(f"the backup is of region {header.region!r}, not {region!r}")
    return fmt.unwrap_key(header, backup_key(settings, region), region=region)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    try:
        stream = path.open("rb")
    except OSError as err:
        raise fmt.BackupError(f"cannot read {path}: {err.strerror}") from None
    with stream:
        yield stream


def _info(path: Path, region: str) -> BackupInfo:
    size = path.stat().st_size
    try:
        with path.open("rb") as stream:
            header, _ = fmt.read_header(stream)
        created = datetime.fromisoformat(header.created_at)
        if created.tzinfo is None:
            raise fmt.BackupCorrupt("the header's time has no zone")
    except (fmt.BackupError, ValueError) as err:
        return BackupInfo(path, region, _name_time(path), size, problem=str(err))
    return BackupInfo(path, header.region, created, size, header.plaintext_bytes, header.source,
                      header.sha256)


def _name_time(path: Path) -> datetime:
    """The time in the file's name, else its modification time (a damaged header)."""
    try:
        return datetime.strptime(path.stem.split("-")[0], NAME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _free_name(folder: Path, now: datetime) -> Path:
    stem = now.strftime(NAME_FORMAT)
    candidate = folder / f"{stem}{SUFFIX}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}{SUFFIX}"
    return candidate


def _work_dir(settings: Settings, url: str) -> Path:
    """Where plaintext copies live briefly: beside the SQLite file, else the data dir."""
    if sources.source_kind(url) == "sqlite":
        return sources.sqlite_file(url).parent
    return settings.data_dir


def _measure(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _phase(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _bytes_phase(progress: Progress | None, name: str, total: int) -> fmt.Progress | None:
    if progress is None:
        return None
    return lambda done: progress(name, done, total)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
