"""The engine in-process over a real SQLite cell: the connector timeout, exclusive claims,
cancellation, and schedules that fire once. A plugin connector registered here is the outer
seam (exactly what a third-party package adds)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from sealflow.bootstrap import build_platform
from sealflow.config import load_settings
from sealflow.connectors.base import Connector, Operation
from sealflow.connectors.registry import ConnectorRegistry
from sealflow.db.sealed import open_
from sealflow.db.tables import executions, schedule_state
from sealflow.queue.embedded import EmbeddedQueue
from sealflow.services import accounts, workflows
from sealflow.services import executions as execution_service

OPEN = {"type": "object"}


async def _sleep_forever(input, ctx):
    await asyncio.sleep(input.get("seconds", 3600))
    return {"slept": True}


def slow_connector() -> Connector:
    return Connector(
        name="slowpoke",
        description="sleeps",
        operations={
            "nap": Operation(
                name="nap",
                description="sleep",
                input_schema=OPEN,
                output_schema=OPEN,
                handler=_sleep_forever,
            )
        },
    )


class MovableClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        import time

        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEALFLOW_LIMITS__CONNECTOR_TIMEOUT_S", "0.3")
    monkeypatch.setenv("SEALFLOW_WORKER__POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("SEALFLOW_WORKER__LEASE_S", "2")
    settings = load_settings({"data_dir": tmp_path})
    registry = ConnectorRegistry.discover()
    registry.register(slow_connector())
    p = build_platform(settings, registry=registry, clock=MovableClock())
    yield p
    p.cells.dispose()


def _account_and_flow(p, doc):
    account, _ = accounts.create_account(p.cells, p.clock, name="T", region="us")
    who = accounts.Caller(region="us", account_id=account.id, token_id="t")
    saved = workflows.create(p.cells, p.clock, p.registry, p.limits, who, doc)
    return who, saved.workflow.id


async def _until_done(p, who, execution_id, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        if execution_service.status_of(p.cells, who, execution_id) in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            return execution_service.detail(p.cells, p.clock, who, execution_id)
        await asyncio.sleep(0.02)
    raise AssertionError("not done")


def test_connector_timeout_names_its_limit(platform):
    who, wf = _account_and_flow(
        platform,
        {
            "name": "slow",
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "name": "nap",
                    "connector": "slowpoke",
                    "input": {},
                    "retry": {"max_attempts": 2, "initial_interval": 0.01},
                }
            ],
        },
    )

    async def main():
        await platform.start()
        started = execution_service.start(platform.cells, platform.clock, who, wf, None)
        platform.queue.submit("us", started.id)
        detail = await _until_done(platform, who, started.id)
        await platform.stop()
        return detail

    detail = asyncio.run(main())
    assert detail["status"] == "failed"
    assert detail["error"]["limit"] == "connector_timeout_s"
    assert detail["error"]["retryable"] is True
    assert detail["steps"][0]["attempts"] == 2  # a timeout is retried


def test_cancel_a_running_execution(platform):
    who, wf = _account_and_flow(
        platform,
        {
            "name": "slow",
            "trigger": {"type": "manual"},
            "steps": [{"name": "wait", "connector": "delay", "input": {"seconds": 30}}],
        },
    )

    async def main():
        await platform.start()
        started = execution_service.start(platform.cells, platform.clock, who, wf, None)
        platform.queue.submit("us", started.id)
        while execution_service.status_of(platform.cells, who, started.id) != "running":
            await asyncio.sleep(0.02)
        assert (
            execution_service.cancel(platform.cells, platform.clock, who, started.id)
            == "cancelling"
        )
        detail = await _until_done(platform, who, started.id)
        await platform.stop()
        return detail

    detail = asyncio.run(main())
    assert detail["status"] == "cancelled"


def test_two_pools_never_claim_the_same_execution(platform):
    """Two queues over one database (two processes' worth): every execution runs once."""
    who, wf = _account_and_flow(
        platform,
        {
            "name": "quick",
            "trigger": {"type": "manual"},
            "steps": [
                {"name": "x", "connector": "transform", "input": {"expression": "$.trigger.body"}}
            ],
        },
    )
    ids = [
        execution_service.start(platform.cells, platform.clock, who, wf, n).id for n in range(200)
    ]
    runs: list[str] = []
    original = platform.runner.run

    async def counting(region, execution_id, owner):
        runs.append(execution_id)
        return await original(region, execution_id, owner)

    platform.runner.run = counting  # type: ignore[method-assign]
    second = EmbeddedQueue(
        cells=platform.cells,
        runner=platform.runner,
        settings=platform.settings.worker,
        clock=platform.clock,
    )

    async def main():
        await platform.queue.start()
        await second.start()
        for _ in range(500):
            with platform.cells["us"].read() as conn:
                left = conn.execute(
                    select(executions.c.id).where(executions.c.status != "succeeded")
                ).all()
            if not left:
                break
            await asyncio.sleep(0.02)
        await second.stop()
        await platform.queue.stop()

    asyncio.run(main())
    assert sorted(runs) == sorted(ids)  # each exactly once
    cell = platform.cells["us"]
    with cell.read() as conn:
        rows = conn.execute(select(executions)).all()
    results = [open_(cell.vault, r.account_id, "executions", r.id, "result", r.result) for r in rows]
    assert sorted(int(r) for r in results) == list(range(200))


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_write(platform):
    who, wf = _account_and_flow(
        platform,
        {
            "name": "quick",
            "trigger": {"type": "manual"},
            "steps": [{"name": "x", "connector": "transform", "input": {"expression": "1"}}],
        },
    )
    started = execution_service.start(platform.cells, platform.clock, who, wf, None)
    with platform.cells["us"].write() as conn:  # a holder on another host that went silent
        conn.execute(
            update(executions)
            .where(executions.c.id == started.id)
            .values(
                status="running",
                lease_owner="elsewhere:1:dead",
                lease_expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )

    async def main():
        await platform.start()
        detail = await _until_done(platform, who, started.id)
        # the old holder wakes up and tries to run it: its lease is gone, nothing is written
        assert await platform.runner.run("us", started.id, "elsewhere:1:dead") is None
        await platform.stop()
        return detail

    detail = asyncio.run(main())
    assert detail["status"] == "succeeded"
    assert len(detail["steps"]) == 1


def test_schedule_fires_once_for_missed_ticks_and_once_across_nodes(platform):
    who, wf = _account_and_flow(
        platform,
        {
            "name": "cron",
            "trigger": {
                "type": "schedule",
                "cron": "*/5 * * * *",
                "timezone": "Europe/Paris",
                "input": {"k": 1},
            },
            "steps": [
                {"name": "x", "connector": "transform", "input": {"expression": "$.trigger.body.k"}}
            ],
        },
    )
    cell = platform.cells["us"]
    assert platform.ticker.tick(cell) == 0  # a new schedule never fires for the past
    with cell.write() as conn:  # the server was down for 3 hours: 36 ticks missed
        conn.execute(
            update(schedule_state).values(last_tick=datetime.now(UTC) - timedelta(hours=3))
        )
    from sealflow.engine.triggers import ScheduleTicker

    other_node = ScheduleTicker(
        cells=platform.cells,
        clock=platform.clock,
        definitions=platform.definitions,
        submit=lambda r, i: None,
    )
    assert platform.ticker.tick(cell) == 1
    assert other_node.tick(cell) == 0
    assert platform.ticker.tick(cell) == 0
    platform.clock.offset = timedelta(minutes=5)
    assert other_node.tick(cell) == 1
    with cell.read() as conn:
        rows = conn.execute(select(executions).order_by(executions.c.created_at)).all()
    assert [r.trigger_type for r in rows] == ["schedule", "schedule"]
    trigger = open_(
        cell.vault, rows[0].account_id, "executions", rows[0].id, "trigger_payload",
        rows[0].trigger_payload,
    )
    assert trigger["body"] == {"k": 1}


def test_an_unreadable_schedule_does_not_stop_the_others(platform):
    """A shredded account's schedule rows (brought back by a restored data backup) cannot be
    read; the region's other schedules still fire."""
    doc = {
        "name": "cron",
        "trigger": {"type": "schedule", "cron": "* * * * *", "input": {}},
        "steps": [{"name": "x", "connector": "transform", "input": {"expression": "1"}}],
    }
    gone, _ = _account_and_flow(platform, doc)
    kept, _ = _account_and_flow(platform, doc)
    cell = platform.cells["us"]
    with cell.write() as conn:
        conn.execute(update(schedule_state).values(
            last_tick=datetime.now(UTC) - timedelta(minutes=10)))
    cell.vault.shred(gone.account_id)
    platform.definitions._entries.clear()  # as after a restart: the documents must be opened
    assert platform.ticker.tick(cell) == 1
    with cell.read() as conn:
        rows = conn.execute(select(executions.c.account_id)).all()
    assert [r.account_id for r in rows] == [kept.account_id]
