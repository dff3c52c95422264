"""The erasure log of a region (D5 with D6): an append-only file of erased members,
`<data_dir>/keys/<region>.erasures`, beside the key store's tombstone log and, like it, never
part of a backup (a backup holds the cell database only, services.backups).

Why: an erasure removes a member's rows, but a backup taken before it still holds them, sealed
under the account's key, which is alive (only an account deletion shreds keys). Restoring that
backup would bring the person back. This file still names them: `reapply()` (run at every
start, bootstrap.build_platform, and after a restore) erases them again, with an audit record.

A line is one JSON object: account id, member id, request id, time. Ids only: nothing here
maps a member id back to a person. It is appended and fsynced inside the erasure's
transaction, after every statement succeeded and before the commit, so a committed erasure is
always listed (a commit that fails after the append leaves a line whose member is erased at
the next start: the request asked for it, and the last-owner rule is checked again then).
Never restore this file from a backup: it only grows."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from sealflow.audit.records import SYSTEM, Action, format_time
from sealflow.clock import Clock
from sealflow.db.tables import users
from sealflow.regions.cells import Cell, Cells
from sealflow.services import subject_erasure, subject_export

log = logging.getLogger("sealflow.subjects")
_lock = threading.Lock()


def erasure_log_path(data_dir: Path, region: str) -> Path:
    return Path(data_dir) / "keys" / f"{region}.erasures"


@dataclass(frozen=True)
class Erased:
    account_id: str
    user_id: str
    request_id: str
    at: str


def append(path: Path, entry: Erased) -> None:
    """Add one line and fsync it (the file 0600, in a 0700 directory)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps({"account_id": entry.account_id, "user_id": entry.user_id,
                       "request": entry.request_id, "at": entry.at}, sort_keys=True) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def entry(account_id: str, user_id: str, request_id: str, at: datetime) -> Erased:
    return Erased(account_id, user_id, request_id, format_time(at))


def read(path: Path) -> Iterator[Erased]:
    """Every entry; a line that does not parse (an append torn by a crash) is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            yield Erased(str(d["account_id"]), str(d["user_id"]), str(d["request"]),
                         str(d["at"]))
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d: not an erasure entry, skipped", path, number)


def reapply(cell: Cell, clock: Clock, path: Path) -> int:
    """Erase again every listed member the database has (a restored backup brought them
    back); returns how many. The account's last owner is left (and a warning logged)."""
    entries = {(e.account_id, e.user_id): e for e in read(path)}
    if not entries:
        return 0
    ids = [uid for _, uid in entries]
    back: list[tuple[str, str]] = []
    with cell.read() as conn:
        for start in range(0, len(ids), 500):
            back += [(r.account_id, r.id) for r in conn.execute(
                select(users.c.account_id, users.c.id).where(users.c.id.in_(
                    ids[start:start + 500])))]
    done = 0
    for account_id, user_id in back:
        e = entries.get((account_id, user_id))
        if e is None:
            continue
        now = clock.now()
        try:
            with cell.write() as conn, subject_erasure.secure_delete(conn):
                who = subject_export.footprint(cell, conn, account_id, user_id)
                removed = subject_erasure.erase_rows(cell, conn, account_id, who)
                cell.audit.record(conn, account_id=account_id, actor=SYSTEM,
                                  action=Action.ERASURE, target=f"user:{user_id}", at=now,
                                  details={"request": e.request_id, "step": "reapplied",
                                           "removed": removed})
        except subject_erasure.LastOwner:
            log.warning("region %s: member %s of account %s, erased by request %s, is back "
                        "(a restored backup?) as the account's last owner: not erased again",
                        cell.region, user_id, account_id, e.request_id)
            continue
        done += 1
    if done:
        subject_erasure.compact(cell.engine)
        log.warning("region %s: erased again %d member(s) a restored backup brought back",
                    cell.region, done)
    return done


def reapply_all(data_dir: Path, cells: Cells, clock: Clock) -> int:
    """reapply() for every served region (bootstrap.build_platform, at each start)."""
    return sum(reapply(cells[r], clock, erasure_log_path(data_dir, r)) for r in cells)
