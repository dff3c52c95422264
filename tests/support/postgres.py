"""A throwaway PostgreSQL 15 cluster for the tests, and a fresh database per test.

The cluster runs as the `postgres` OS user (initdb refuses root), with its data directory and
its socket directory under one `/tmp/sealflow-pg.*` folder, listening on 127.0.0.1 on a free
port. Only 127.0.0.1 may connect over TCP, with a password (SCRAM) generated per cluster; the
socket takes only the cluster's OS user (peer). Durability is switched off (fsync, full page
writes): the cluster lives for one test run and its data is worth nothing.

Two ways in:
- `make test` starts one cluster for the whole run (`python -m tests.support.postgres start DIR`,
  then `stop DIR` from a shell trap, failure or not) and hands its DSN to pytest in
  SEALFLOW_TEST_PG_DSN; the session reuses it.
- Without that variable, the session (`PgDatabases.for_session`) starts its own cluster and
  stops it at the end.

Each test gets its databases by CREATE DATABASE ... TEMPLATE from one template migrated to
head once per session (a copy takes about 0.15 s, running the migrations about 1.5 s), and
they are dropped afterwards (WITH (FORCE): an engine a test forgot to dispose does not block).
"""

from __future__ import annotations

import atexit
import getpass
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("SEALFLOW_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DSN_ENV = "SEALFLOW_TEST_PG_DSN"
BACKEND_ENV = "SEALFLOW_TEST_BACKEND"
OS_USER = "postgres"
DB_USER = "sealflow"  # not a superuser: the application's rights, as an operator would grant


def backend_is_postgres() -> bool:
    return os.environ.get(BACKEND_ENV, "sqlite") == "postgres"


def keystores_on_postgres() -> bool:
    """SEALFLOW_TEST_PG_KEYSTORE=1: the regions' key stores too, each in a database of its own
    (apart from the cell's, as the design wants); else they stay SQLite files."""
    return backend_is_postgres() and os.environ.get("SEALFLOW_TEST_PG_KEYSTORE") == "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _os_user() -> str:
    """Who runs the cluster: `postgres` when we are root (initdb refuses root), else us."""
    return OS_USER if os.geteuid() == 0 else getpass.getuser()


def _as_postgres(*argv: str, stdin: str | None = None, timeout: float = 60
                 ) -> subprocess.CompletedProcess[str]:
    """Runs a PostgreSQL program as the cluster's OS user (as is, when not root)."""
    cmd = list(argv)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", OS_USER, "--", *cmd]
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout)[-2000:]}")
    return done


@dataclass
class Cluster:
    """One initdb'd cluster under `root` (root/data, root/sock, root/dsn)."""

    root: Path
    port: int = 0
    password: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def dsn_file(self) -> Path:
        return self.root / "dsn"

    def dsn(self, database: str = "postgres") -> str:
        return (f"postgresql+psycopg://{DB_USER}:{self.password}@127.0.0.1:{self.port}/"
                f"{database}")

    def start(self) -> float:
        """initdb + pg_ctl start; returns the seconds it took. Writes the DSN to root/dsn
        (0600: it holds the password)."""
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"{PG_BIN}/initdb not found: apt-get install -y postgresql-15")
        began = time.monotonic()
        self.port = self.port or _free_port()
        self.password = self.password or secrets.token_urlsafe(24)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)  # the postgres user must reach data/ and sock/, not read dsn
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            shutil.chown(d, _os_user())
        pwfile = self.socket_dir / "pw"  # readable by the cluster's user, deleted after initdb
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password)
        shutil.chown(pwfile, _os_user())
        try:
            _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", _os_user(),
                         "--pwfile", str(pwfile), "--auth-local=peer",
                         "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                         "--no-sync", "--no-instructions")
        finally:
            pwfile.unlink(missing_ok=True)
        (self.data_dir / "pg_hba.conf").write_text(
            f"local all {_os_user()} peer\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.socket_dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400 "
                "-c shared_buffers=64MB -c autovacuum=off")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l",
                     str(self.root / "sock" / "server.log"), "-o", opts, "-w", "-t", "60",
                     "start")
        # The application role: owns its databases, is no superuser. The statement goes in on
        # stdin and errors are terse: the password shows in no process list and no message.
        role = f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{self.password}';\n"
        _as_postgres(str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port),
                     "-U", _os_user(), "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                     "-v", "VERBOSITY=terse", "-q", "-X", stdin=role)
        fd = os.open(self.dsn_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.dsn())
        return time.monotonic() - began

    def stop(self) -> None:
        """pg_ctl stop -m fast, then the folder goes (nothing left running or on disk)."""
        if (self.data_dir / "postmaster.pid").exists():
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                         "-w", "-t", "60", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _admin_connect(dsn: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(dsn.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@dataclass
class PgDatabases:
    """Hands out fresh databases, copies of a template migrated once per session."""

    base_dsn: str  # to the cluster's `postgres` database
    cluster: Cluster | None = None  # set when this session started the cluster itself
    started_in_s: float = 0.0
    _prefix: str = field(default_factory=lambda: f"sf{os.getpid()}")
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _template: str = ""
    _live: set[str] = field(default_factory=set)
    _by_data_dir: dict[tuple[str, str], str] = field(default_factory=dict)
    handed_out: int = 0  # for_data_dir calls so far (tests/conftest.py's report)

    @classmethod
    def for_session(cls) -> PgDatabases:
        dsn = os.environ.get(DSN_ENV, "")
        if dsn:
            return cls(dsn)
        cluster = Cluster(Path(tempfile.mkdtemp(prefix="sealflow-pg.", dir="/tmp")))
        atexit.register(cluster.stop)  # a crashed session still stops it
        took = cluster.start()
        return cls(cluster.dsn(), cluster=cluster, started_in_s=took)

    def url(self, database: str) -> str:
        return self.base_dsn.rsplit("/", 1)[0] + "/" + database

    def template(self) -> str:
        """The session's template, migrated to head on first use."""
        if not self._template:
            from sealflow.db.engine import make_engine
            from sealflow.db.migrate import upgrade

            name = f"{self._prefix}_template"
            with _admin_connect(self.base_dsn) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
            engine = make_engine(self.url(name))
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            self._template = name
        return self._template

    def create(self, migrated: bool = True) -> str:
        """A fresh database, migrated to head unless `migrated` is False (then empty); returns
        its SQLAlchemy URL."""
        copy = f' TEMPLATE "{self.template()}" STRATEGY FILE_COPY' if migrated else ""
        name = f"{self._prefix}_{next(self._counter)}"
        with _admin_connect(self.base_dsn) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        self._live.add(name)
        return self.url(name)

    def for_data_dir(self, data_dir: Path, region: str, role: str = "cell") -> str:
        """The `role` database of `region` for a deployment at `data_dir`: created on first
        use, the same one afterwards (a test that rebuilds a platform on the same data
        directory finds its data again, as with the SQLite files). A cell database starts
        migrated; a key store ("keys") starts empty (its own migrations run at start-up)."""
        key = (str(Path(data_dir).resolve()), region if role == "cell" else f"{region}:{role}")
        self.handed_out += 1
        if key not in self._by_data_dir:
            self._by_data_dir[key] = self.create(migrated=role == "cell")
        return self._by_data_dir[key]

    def keys(self) -> set[tuple[str, str]]:
        return set(self._by_data_dir)

    def region_env(self, data_dir: Path, regions: tuple[str, ...]) -> dict[str, str]:
        """SEALFLOW_REGIONS__<R>__DATABASE_URL for a subprocess (`sealflow serve`, the CLI)
        at `data_dir`: every region, since naming one in the environment drops the others."""
        env = {f"SEALFLOW_REGIONS__{r.upper()}__DATABASE_URL": self.for_data_dir(data_dir, r)
               for r in regions}
        if keystores_on_postgres():
            env.update({f"SEALFLOW_REGIONS__{r.upper()}__KEYSTORE_URL":
                        self.for_data_dir(data_dir, r, role="keys") for r in regions})
        return env

    def forget(self, data_dir_keys: set[tuple[str, str]]) -> None:
        """Drops the databases handed out for these (data_dir, region) keys."""
        for key in data_dir_keys:
            url = self._by_data_dir.pop(key, None)
            if url:
                self.drop(url)

    def drop(self, url: str) -> None:
        """Drops a test's database. Autovacuum is off in the throwaway cluster: a worker of
        the superuser's in the database made FORCE fail (`must be a member of the role whose
        process is being terminated`); a clash left anyway is retried briefly."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        for attempt in range(20):
            try:
                with _admin_connect(self.base_dsn) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except psycopg.errors.InsufficientPrivilege:
                if attempt == 19:
                    raise
                time.sleep(0.1)
        self._live.discard(name)

    def close(self) -> None:
        """Drops what is left (the template too); stops the cluster if this session owns it."""
        if self.cluster is not None:
            self.cluster.stop()
            return
        try:
            with _admin_connect(self.base_dsn) as conn:
                for name in [*self._live, self._template]:
                    if name:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            self._live.clear()
            self._by_data_dir.clear()


_shared: PgDatabases | None = None


def shared() -> PgDatabases:
    """The session's PgDatabases, made on first use (a module-scoped `server` fixture may ask
    before any function fixture runs); tests/conftest.py closes it at the end."""
    global _shared
    if _shared is None:
        _shared = PgDatabases.for_session()
        atexit.register(close_shared)
    return _shared


def close_shared() -> None:
    global _shared
    if _shared is not None:
        dbs, _shared = _shared, None
        dbs.close()


def subprocess_env(data_dir: Path) -> dict[str, str]:
    """What tests/support/server.py adds to a server's environment: nothing on SQLite."""
    if not backend_is_postgres():
        return {}
    from sealflow.config import REGIONS

    return shared().region_env(data_dir, REGIONS)


def read_selection(path: Path) -> tuple[list[str], list[str]]:
    """The node-id prefixes to run on PostgreSQL, and those to leave out (`-` lines). `#` starts
    a comment (the reason a test is left out goes there)."""
    keep: list[str] = []
    drop: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-"):
            drop.append(line[1:].strip())
        elif line:
            keep.append(line)
    return keep, drop


def selected(nodeid: str, keep: list[str], drop: list[str]) -> bool:
    def matches(prefix: str) -> bool:
        return nodeid == prefix or nodeid.startswith((prefix + "::", prefix + "["))

    return any(map(matches, keep)) and not any(map(matches, drop))


def main(argv: list[str]) -> int:
    """`python -m tests.support.postgres start|stop DIR` (the Makefile's cluster)."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.support.postgres start|stop DIR", file=sys.stderr)
        return 2
    cluster = Cluster(Path(argv[1]))
    if argv[0] == "stop":
        cluster.stop()
        return 0
    try:
        took = cluster.start()
    except BaseException:
        cluster.stop()
        raise
    print(f"PostgreSQL cluster started in {took:.2f} s on 127.0.0.1:{cluster.port}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
