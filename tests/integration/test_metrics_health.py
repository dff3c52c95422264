"""/metrics and /readyz in-process (the server-level tests are tests/e2e/test_metrics.py):
metrics are off without a token, the gauges read the queue from the database, readiness
names a key provider that cannot be reached (transit pointed at a closed port) and a stopped
queue."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from sealflow.api.app import create_app
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.core.secrets import Secret
from sealflow.db.tables import executions
from sealflow.monitoring.health import readiness
from sealflow.regions.cells import Cells
from sealflow.vault.providers.transit import TransitProvider
from tests.support.clock import ManualClock
from tests.support.server import free_port

TOKEN = "metrics-token-for-the-test-0123456789"


def platform_with(tmp_path: Path, **settings: object) -> Platform:
    return build_platform(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()},
                                   **settings), clock=ManualClock())  # type: ignore[arg-type]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = platform_with(tmp_path, metrics={"token": TOKEN})
    yield p
    p.cells.dispose()


def test_metrics_are_off_without_a_token(tmp_path: Path) -> None:
    p = platform_with(tmp_path)
    try:
        client = TestClient(create_app(p, run_workers=False))
        r = client.get("/metrics", headers={"Authorization": "Bearer "})
        assert r.status_code == 404 and "metrics.token" in r.json()["error"]["message"]
    finally:
        p.cells.dispose()


def test_the_queue_gauges_read_the_database(platform: Platform) -> None:
    p = platform
    now = p.clock.now()
    with p.cells["us"].write() as conn:
        for i, (status, after) in enumerate([("queued", -5), ("queued", -1), ("queued", 60),
                                             ("running", -9), ("succeeded", -9)]):
            conn.execute(insert(executions).values(
                id=f"e{i}", account_id="a", workflow_id="w", workflow_version=1, status=status,
                trigger_type="manual", trigger_payload="x",
                run_after=now + timedelta(seconds=after), created_at=now))
    client = TestClient(create_app(p, run_workers=False))
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    body = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'sealflow_queue_depth{region="us",state="queued"} 2.0' in body
    assert 'sealflow_queue_depth{region="us",state="delayed"} 1.0' in body
    assert 'sealflow_queue_depth{region="us",state="running"} 1.0' in body


def test_readiness_names_an_unreachable_key_provider_and_a_stopped_queue(
    platform: Platform,
) -> None:
    cell = platform.cells["us"]
    closed = TransitProvider(f"http://127.0.0.1:{free_port()}", Secret("t", "transit token"),
                             "sealflow-us", timeout_s=2)
    try:
        broken = Cells({"us": dataclasses.replace(cell, provider=closed)})
        result = readiness(broken, None)
        assert not result.ready and result.failing == ["key_provider:us"]
        assert result.checks["database:us"] == "ok"
        assert result.checks["key_provider:us"].startswith("unavailable (")
    finally:
        closed.close()
    assert readiness(platform.cells, None).ready
    stopped = readiness(platform.cells, platform.queue)  # never started
    assert stopped.failing == ["queue"]
