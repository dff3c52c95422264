from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres as pg
from tests.support.bao import bao  # noqa: F401 - a fixture, for every module
from tests.support.server import Server, make_server
from tests.support.target import Target, start_target


@pytest.fixture
def target() -> Iterator[Target]:
    t = start_target()
    yield t
    t.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `sealflow serve` over HTTPS per test module."""
    s = make_server(Path(tmp_path_factory.mktemp("server")))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def account(server: Server) -> tuple[str, str]:
    return server.create_account("Acme")


# --- PostgreSQL backend (SEALFLOW_TEST_BACKEND=postgres; tests/support/postgres.py) -----------
# For the whole session, every Settings whose region has no database_url configured gets a
# PostgreSQL database per (data_dir, region) instead of `<data_dir>/<region>.db`: a fresh copy
# of the migrated template, dropped when the test (or the module, for module-scoped fixtures)
# that made it ends. Servers from tests/support/server.py get theirs through their environment.
# The key stores stay SQLite files unless SEALFLOW_TEST_PG_KEYSTORE=1 (make pytest-postgres
# sets it): then each gets a PostgreSQL database of its own. SEALFLOW_TEST_PG_SELECTION names
# the file of the node ids to run; SEALFLOW_TEST_PG_REPORT a file to which each test appends
# whether it used a cell database (to find the storage-dependent tests).


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[pg.PgDatabases]:
    dbs = pg.shared()
    yield dbs
    pg.close_shared()


@pytest.fixture(scope="session", autouse=True)
def _pg_cells(request: pytest.FixtureRequest) -> Iterator[None]:
    if not pg.backend_is_postgres():
        yield
        return
    dbs: pg.PgDatabases = request.getfixturevalue("pg_databases")
    from sealflow.config import Settings

    configured_url = Settings.database_url

    def database_url(self: Settings, region: str) -> str:
        if region in self.regions and self.regions[region].database_url:
            return configured_url(self, region)
        return dbs.for_data_dir(self.data_dir, region)

    configured_keystore = Settings.keystore_url

    def keystore_url(self: Settings, region: str) -> str:  # SEALFLOW_TEST_PG_KEYSTORE=1
        if region in self.regions and self.regions[region].keystore_url:
            return configured_keystore(self, region)
        return dbs.for_data_dir(self.data_dir, region, role="keys")  # apart from the data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Settings, "database_url", database_url)
        if pg.keystores_on_postgres():
            patch.setattr(Settings, "keystore_url", keystore_url)
        yield


def _drop_what_was_made(request: pytest.FixtureRequest) -> Iterator[None]:
    if not pg.backend_is_postgres():
        yield
        return
    dbs: pg.PgDatabases = request.getfixturevalue("pg_databases")
    before, used = dbs.keys(), dbs.handed_out
    yield
    dbs.forget(dbs.keys() - before)
    report = os.environ.get("SEALFLOW_TEST_PG_REPORT")
    if report and request.scope == "function":
        with open(report, "a", encoding="utf-8") as f:
            f.write(f"{request.node.nodeid}\t{int(dbs.handed_out > used)}\n")


_pg_module_databases = pytest.fixture(scope="module", autouse=True)(_drop_what_was_made)
_pg_test_databases = pytest.fixture(autouse=True)(_drop_what_was_made)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selection = os.environ.get("SEALFLOW_TEST_PG_SELECTION")
    if not selection:
        return
    keep, drop = pg.read_selection(Path(selection))
    chosen = [i for i in items if pg.selected(i.nodeid, keep, drop)]
    deselected = [i for i in items if not pg.selected(i.nodeid, keep, drop)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = chosen
