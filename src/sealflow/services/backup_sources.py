"""Where a backup's plaintext comes from and goes back to: a consistent copy of a cell
database, and putting a copy back in its place (services.backups seals and opens them).

SQLite: SQLite's online backup API (`sqlite3.Connection.backup`) in steps of pages, inside
one read transaction on the source, so the copy is one snapshot even while the server keeps
writing (WAL readers never block the writer, and the held snapshot keeps the backup from
restarting). Putting a copy back needs the database to be unused: switching the live file
out of WAL mode is refused by SQLite while any other connection has it open, which is how a
running `sealflow serve` or worker is detected; the copy then replaces the file by rename.

PostgreSQL (`postgresql+psycopg://`): `pg_dump --format=custom` and `pg_restore --clean
--single-transaction`, the password passed in the environment (PGPASSWORD), never on the
command line. The key store's tables are excluded in case it shares the database. Not
exercised by the tests yet (a later issue brings the throwaway PostgreSQL).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from sealflow.core.errors import Conflict, SealflowError
from sealflow.db.migrate import MIGRATIONS

StepProgress = Callable[[int, int], None]  # (done, total), in pages or bytes
SQLITE_STEP_PAGES = 1024
# The key store may share a PostgreSQL database with its cell (vault.keystore); its tables are
# never part of a data backup.
KEYSTORE_TABLES = ("account_keysets", "tombstones", "alembic_version_keys")


class BackupSourceError(SealflowError):
    """The database could not be copied or put back (a tool failed, a file is missing)."""

    code = "backup_source_failed"
    retryable = True


class DatabaseInUse(Conflict):
    code = "database_in_use"
    retryable = True


def source_kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return "sqlite"
    if backend == "postgresql":
        return "postgresql"
    raise BackupSourceError(f"database URL of backend {backend!r}: only sqlite and "
                            "postgresql cells can be backed up", retryable=False)


def sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupSourceError("an in-memory SQLite database has no file to back up",
                                retryable=False)
    return Path(database)


def new_private_file(path: Path) -> None:
    """An empty file only the owner can read (plaintext copies sit beside the database)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


def copy_database(url: str, dest: Path, *, pg_dump: str = "pg_dump",
                  progress: StepProgress | None = None) -> None:
    """Writes a consistent copy of the database at `url` into the new file `dest` (0600)."""
    new_private_file(dest)
    if source_kind(url) == "sqlite":
        _copy_sqlite(sqlite_file(url), dest, progress)
    else:
        conninfo, env = pg_conninfo(url)
        excluded = [f"--exclude-table={t}" for t in KEYSTORE_TABLES]
        _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", *excluded,
              f"--file={dest}", f"--dbname={conninfo}"], env, "pg_dump")


def _copy_sqlite(source: Path, dest: Path, progress: StepProgress | None) -> None:
    if not source.is_file():
        raise BackupSourceError(f"database file {source} does not exist (run sealflow migrate)",
                                retryable=False)
    src = sqlite3.connect(source, isolation_level=None, timeout=10)
    try:
        src.execute("BEGIN")  # one snapshot for every step
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        dst = sqlite3.connect(dest)
        try:
            (page,) = src.execute("PRAGMA page_size").fetchone()

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:  # in bytes, as the later phases
                    progress((total - remaining) * page, total * page)

            src.backup(dst, pages=SQLITE_STEP_PAGES, progress=step, sleep=0)
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as err:
        raise BackupSourceError(f"copying {source.name} failed: {err}") from None
    finally:
        src.close()


def schema_revision(path: Path) -> str | None:
    """The migration revision recorded in a SQLite copy (None when it has none)."""
    db = _private_reader(path)
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])
    except sqlite3.Error:
        return None
    finally:
        db.close()


def _private_reader(path: Path) -> sqlite3.Connection:
    """Reads a private copy without locks or -wal/-shm side files (nobody else writes it)."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def remove_copy(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


def check_sqlite_copy(path: Path) -> None:
    """A restored plaintext must be a sound SQLite database whose schema this sealflow can
    migrate (not one of a newer version)."""
    try:
        db = _private_reader(path)
        try:
            (result,) = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as err:
        raise BackupSourceError(f"the backup's database does not open: {err}",
                                retryable=False) from None
    if result != "ok":
        raise BackupSourceError(f"the backup's database fails SQLite's check: {result}",
                                retryable=False)
    revision = schema_revision(path)
    if revision is not None and revision not in known_revisions():
        raise BackupSourceError(f"the backup's schema revision {revision} is newer than this "
                                "sealflow; upgrade sealflow first", retryable=False)


@contextmanager
def exclusive(url: str, engine: Engine) -> Iterator[None]:
    """Holds the database for a restore: DatabaseInUse when another process uses it."""
    engine.dispose()  # this process's own pooled connections
    if source_kind(url) == "postgresql":
        with engine.connect() as conn:
            others = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalar_one()
        engine.dispose()
        if others:
            raise DatabaseInUse(f"the database has {others} other connection(s): stop sealflow "
                                "serve and the workers of this region, then restore")
        yield
        return
    path = sqlite_file(url)
    if not path.exists():
        yield
        return
    db = sqlite3.connect(path, isolation_level=None, timeout=0.5)
    try:
        try:
            (mode,) = db.execute("PRAGMA journal_mode=DELETE").fetchone()
            if mode != "delete":
                raise sqlite3.OperationalError(mode)
            db.execute("BEGIN EXCLUSIVE")  # nobody opens the old file until it is replaced
        except sqlite3.OperationalError:
            raise DatabaseInUse(f"{path.name} is in use by another process: stop sealflow "
                                "serve and the workers of this region, then restore") from None
        yield
    finally:
        db.close()


def put_back(url: str, restored: Path, *, pg_restore: str = "pg_restore") -> Path | None:
    """Replaces the database with the restored copy (inside `exclusive`). SQLite: returns a
    hard link to the previous file (the caller removes it once the restore is complete, or
    puts it back with `undo`); PostgreSQL: one pg_restore transaction, None."""
    if source_kind(url) == "postgresql":
        conninfo, env = pg_conninfo(url)
        _run([pg_restore, "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
              "--no-owner", "--no-privileges", f"--dbname={conninfo}", str(restored)],
             env, "pg_restore")
        return None
    live = sqlite_file(url)
    previous: Path | None = None
    if live.exists():
        previous = live.with_name(f".{live.name}.before-restore")
        previous.unlink(missing_ok=True)
        os.link(live, previous)
    for suffix in ("-wal", "-shm", "-journal"):  # never replay the old file's journal
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    os.replace(restored, live)
    _fsync_dir(live.parent)
    return previous


def undo(url: str, previous: Path | None) -> None:
    """Puts the previous SQLite file back after a restore failed past `put_back`."""
    if previous is None:
        return
    live = sqlite_file(url)
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    os.replace(previous, live)
    _fsync_dir(live.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pg_conninfo(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the password for the environment."""
    parsed = make_url(url)
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    plain = URL.create("postgresql", username=parsed.username, host=parsed.host,
                       port=parsed.port, database=parsed.database, query=parsed.query)
    return plain.render_as_string(hide_password=False), env


def _run(argv: list[str], env: dict[str, str], tool: str) -> None:
    try:
        # The program is an operator setting and the arguments are a list (no shell).
        done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True,  # noqa: S603
                              text=True, check=False, timeout=6 * 3600)
    except FileNotFoundError:
        raise BackupSourceError(f"{tool} is not installed (settings backups.{tool})",
                                retryable=False) from None
    except subprocess.TimeoutExpired:
        raise BackupSourceError(f"{tool} ran for more than 6 hours and was stopped") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupSourceError(f"{tool} failed (exit {done.returncode}): {last}")
