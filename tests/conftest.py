from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
