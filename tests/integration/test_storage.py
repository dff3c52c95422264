"""The data storage connector (D1, D2) over a real SQLite cell: every operation, its limits,
values sealed at rest, atomic increments from 20 concurrent executions (the engine) and from
20 threads with their own connections (the database's atomicity, no Python lock), and the
lifetimes of the three scopes."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sealflow.bootstrap import build_platform
from sealflow.config import load_settings
from sealflow.core.errors import InvalidInput, LimitExceeded
from sealflow.core.workflows import parse_text, validate
from sealflow.db.tables import storage_entries, storage_items
from sealflow.services import account_deletion, accounts, keys, workflows
from sealflow.services import executions as execution_service
from sealflow.services.storage import AwaitTimeout, ScopedStorage, WrongKind
from sealflow.services.storage_lifetimes import sweep_ended_executions


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEALFLOW_WORKER__CONCURRENCY", "20")
    monkeypatch.setenv("SEALFLOW_WORKER__POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("SEALFLOW_LIMITS__STORAGE_VALUE_BYTES", "1000")
    monkeypatch.setenv("SEALFLOW_LIMITS__STORAGE_KEY_LENGTH", "40")
    settings = load_settings({"data_dir": tmp_path})
    p = build_platform(settings)
    yield p
    p.cells.dispose()


def _account(p):
    account, _ = accounts.create_account(p.cells, p.clock, name="T", region="us")
    return accounts.Caller(region="us", account_id=account.id, token_id="t")


def _flow(p, who, steps, name="store"):
    doc = {"name": name, "trigger": {"type": "manual"}, "steps": steps}
    return workflows.create(p.cells, p.clock, p.registry, p.limits, who, doc).workflow.id


def _storage(p, who, *, workflow_id="wf", execution_id="ex") -> ScopedStorage:
    return ScopedStorage(p.cells["us"], p.clock, p.limits, account_id=who.account_id,
                         workflow_id=workflow_id, execution_id=execution_id)


async def _run_all(p, who, wf, payloads, timeout=30.0):
    ids = [execution_service.start(p.cells, p.clock, who, wf, body).id for body in payloads]
    for execution_id in ids:
        p.queue.submit("us", execution_id)
    done = ("succeeded", "failed", "cancelled")
    for _ in range(int(timeout / 0.02)):
        if all(execution_service.status_of(p.cells, who, i) in done for i in ids):
            return [execution_service.detail(p.cells, p.clock, who, i) for i in ids]
        await asyncio.sleep(0.02)
    raise AssertionError("executions did not finish")


def _count(p, table, **where):
    with p.cells["us"].read() as conn:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(table.c[name] == value)
        return conn.execute(query).scalar_one()


def test_twenty_parallel_executions_of_fifty_increments_end_at_1000(platform, tmp_path: Path):
    """Two engines over one database (two processes' worth: each its own thread, event loop,
    connections and worker pool) run 20 executions at once, 10 started on each."""
    p = platform
    second = build_platform(p.settings, migrate=False)
    who = _account(p)
    wf = _flow(p, who, [
        {"name": "each", "connector": "loop", "input": {"items": "$.trigger.body"}, "steps": [
            {"name": "shared", "connector": "storage", "operation": "atomic_increment",
             "input": {"scope": "account", "key": "hits"}},
            {"name": "mine", "connector": "storage", "operation": "atomic_increment",
             "input": {"scope": "execution", "key": "hits"}},
        ], "next": "total"},
        {"name": "total", "connector": "storage", "operation": "get",
         "input": {"scope": "execution", "key": "hits"}},
    ])
    details: list[dict] = []
    failures: list[BaseException] = []

    def engine(q) -> None:
        async def main():
            await q.start()
            try:
                details.extend(await _run_all(q, who, wf, [list(range(50))] * 10))
            finally:
                await q.stop()

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            q.cells["us"].close_kept()

    threads = [threading.Thread(target=engine, args=(q,)) for q in (p, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.cells.dispose()
    assert failures == []
    assert [d["status"] for d in details] == ["succeeded"] * 20
    # Each execution saw its own execution scope only, and it is gone with the execution.
    assert [d["result"] for d in details] == [{"found": True, "value": 50}] * 20
    assert _count(p, storage_entries, scope="execution") == 0
    assert _storage(p, who).get("account", "hits").value == 1000


def test_increments_from_twenty_threads_are_atomic_in_the_database(platform):
    """Each thread has its own pooled connection and transaction: only the database's write
    lock (SQLite BEGIN IMMEDIATE; FOR UPDATE on PostgreSQL) keeps the count exact."""
    p = platform
    who = _account(p)
    store = _storage(p, who)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                store.increment("workflow", "n")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get("workflow", "n").value == 1000
    assert store.increment("workflow", "n", 0.5) == 1000.5


def test_every_operation(platform):
    p = platform
    who = _account(p)
    s = _storage(p, who)
    assert s.get("account", "missing").found is False
    s.set("account", "greeting", {"hello": "world"})
    assert s.get("account", "greeting").value == {"hello": "world"}
    s.set("account", "greeting", None)  # null is a value, not a missing key
    assert (s.get("account", "greeting").found, s.get("account", "greeting").value) == (True, None)
    assert s.delete("account", "greeting") is True
    assert s.delete("account", "greeting") is False

    # Lists: one row per element; a stored array becomes a list on its first append.
    s.set("workflow", "tags", ["a", "b"])
    assert s.append("workflow", "tags", "c") == 3
    assert s.append("workflow", "tags", "b") == 4
    assert s.get("workflow", "tags").value == ["a", "b", "c", "b"]
    assert s.delete_from_list("workflow", "tags", value="b", by_value=True) == (2, 2)
    assert s.delete_from_list("workflow", "tags", index=-1) == (1, 1)
    assert s.delete_from_list("workflow", "tags", index=5) == (0, 1)
    assert s.get("workflow", "tags").value == ["a"]
    s.set("workflow", "tags", 7)  # set replaces the list, elements included
    assert s.get("workflow", "tags").value == 7
    assert _count(p, storage_items) == 0

    # Collections: a queue.
    for n in range(3):
        assert s.append("execution", "queue", {"n": n}) == n + 1
    assert [s.shift("execution", "queue").value for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert s.shift("execution", "queue").found is False
    assert s.shift("execution", "nothing").found is False

    # Wrong kinds are clear errors.
    s.set("account", "word", "x")
    with pytest.raises(WrongKind, match="not a number"):
        s.increment("account", "word")
    with pytest.raises(WrongKind, match="not a list"):
        s.append("account", "word", 1)
    with pytest.raises(WrongKind, match="holds a list"):
        s.increment("execution", "queue")
    with pytest.raises(InvalidInput, match="unknown storage scope"):
        s.get("global", "x")

    # Scopes are separate: the same key name in each.
    for scope in ("execution", "workflow", "account"):
        s.set(scope, "same", scope)
    assert [s.get(sc, "same").value for sc in ("execution", "workflow", "account")] == [
        "execution", "workflow", "account"]
    other = _storage(p, who, workflow_id="wf2", execution_id="ex2")
    assert other.get("workflow", "same").found is False
    assert other.get("account", "same").value == "account"
    stranger = _storage(p, _account(p))
    assert stranger.get("account", "same").found is False


def test_get_all_keys_pages_with_a_cursor(platform):
    p = platform
    s = _storage(p, _account(p))
    names = {f"key-{n}" for n in range(25)}
    for name in names:
        s.set("workflow", name, 1)
    s.set("account", "elsewhere", 1)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        keys, cursor = s.keys("workflow", cursor=cursor, limit=10)
        seen += keys
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 25 and set(seen) == names
    with pytest.raises(InvalidInput, match="cursor"):
        s.keys("workflow", cursor="%%%")


def test_limits_name_their_setting(platform):
    s = _storage(platform, _account(platform))
    with pytest.raises(LimitExceeded, match="storage_value_bytes=1000"):
        s.set("account", "big", "x" * 1000)
    with pytest.raises(LimitExceeded, match="storage_value_bytes"):
        s.append("account", "list", "x" * 1000)
    with pytest.raises(LimitExceeded, match="storage_key_length=40"):
        s.get("account", "k" * 41)
    s.set("account", "k" * 40, "x" * 900)  # at the limits: fine


def test_values_and_key_names_are_sealed_at_rest(platform, tmp_path: Path):
    p = platform
    s = _storage(p, _account(p))
    s.set("account", "customer:alice@example.com", {"card": "4111-TOP-SECRET"})
    s.append("account", "emails-list", "bob@example.com")
    with p.cells["us"].write():
        pass
    raw = b"".join(f.read_bytes() for f in tmp_path.rglob("*.db*"))
    assert b"storage_entries" in raw  # the cell database (and its WAL) was read
    for plain in (b"alice@example.com", b"TOP-SECRET", b"bob@example.com", b"emails-list"):
        assert plain not in raw
    with sqlite3.connect(tmp_path / "us.db") as conn:
        rows = conn.execute("SELECT key_hash, key_name, value FROM storage_entries").fetchall()
    assert len(rows) == 2
    assert all(len(h) == 64 and "alice" not in n and "emails" not in n for h, n, _ in rows)


def test_await_value_sees_another_writer_or_times_out(platform):
    p = platform
    who = _account(p)
    waiter = _storage(p, who, execution_id="a")
    writer = _storage(p, who, execution_id="b")

    async def main():
        async def later():
            await asyncio.sleep(0.2)
            writer.set("workflow", "ready", {"go": True})

        task = asyncio.ensure_future(later())
        got = await waiter.await_value("workflow", "ready", 5)
        await task
        with pytest.raises(AwaitTimeout, match=r"no value after 0\.3 s"):
            await waiter.await_value("workflow", "never", 0.3)
        return got

    assert asyncio.run(main()) == {"go": True}


def test_await_value_step_fails_with_a_clear_error(platform):
    p = platform
    who = _account(p)
    wf = _flow(p, who, [{"name": "wait", "connector": "storage", "operation": "await_value",
                         "input": {"scope": "account", "key": "k", "timeout_s": 0.2}}])

    async def main():
        await p.start()
        try:
            return await _run_all(p, who, wf, [None])
        finally:
            await p.stop()

    [detail] = asyncio.run(main())
    assert detail["status"] == "failed"
    assert detail["error"]["code"] == "await_timeout"


def test_workflow_and_account_scopes_end_with_them(platform):
    p = platform
    who = _account(p)
    wf = _flow(p, who, [{"name": "keep", "connector": "storage", "operation": "set",
                         "input": {"scope": "workflow", "key": "k", "value": 1}}])
    kept = _flow(p, who, [{"name": "keep", "connector": "storage", "operation": "append_to_list",
                           "input": {"scope": "workflow", "key": "k", "value": 2}}], name="b")
    s = _storage(p, who, workflow_id=wf)
    s.set("account", "acct", [1, 2])
    s.append("account", "acct", 3)

    async def main():
        await p.start()
        try:
            await _run_all(p, who, wf, [None])
            await _run_all(p, who, kept, [None])
        finally:
            await p.stop()

    asyncio.run(main())
    assert s.get("workflow", "k").value == 1
    workflows.delete_workflow(p.cells, p.clock, who, wf)
    assert s.get("workflow", "k").found is False
    assert _storage(p, who, workflow_id=kept).get("workflow", "k").value == [2]

    record = account_deletion.delete_account(p.cells, p.clock, region="us",
                                             account_id=who.account_id)
    assert record.removed["storage_entries"] == 2  # the account's key and the other workflow's
    assert record.removed["storage_items"] == 4
    assert record.removed["storage_lookup_keys"] == 1
    assert _count(p, storage_entries, account_id=who.account_id) == 0


def test_the_documented_example_is_valid_and_runs(platform):
    """docs/workflows.md, "Data storage": the example validates with the real connectors and
    does what it says."""
    p = platform
    text = (Path(__file__).resolve().parents[2] / "docs" / "workflows.md").read_text()
    section = text[text.index("## Data storage"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    document = parse_text(example.group(1))
    validate(document, p.registry, p.limits)
    who = _account(p)
    wf = workflows.create(p.cells, p.clock, p.registry, p.limits, who, document).workflow.id

    async def main():
        await p.start()
        try:
            return await _run_all(p, who, wf, [{"email": "a@example.com"}] * 2)
        finally:
            await p.stop()

    assert [d["status"] for d in asyncio.run(main())] == ["succeeded"] * 2
    s = _storage(p, who, workflow_id=wf)
    assert s.get("workflow", "signups").value == 2
    assert s.get("account", "to-welcome").value == ["a@example.com"] * 2


class _Later:
    """A clock an hour ahead: the rotation's wait for other processes' key caches is over."""

    def now(self):
        return datetime.now(UTC) + timedelta(hours=1)


def test_rotate_data_reencrypts_storage_and_drops_the_old_key(platform):
    p = platform
    who = _account(p)
    s = _storage(p, who)
    s.set("account", "k", {"v": 1})
    s.append("workflow", "list", "x")
    s.increment("execution", "n", 5)
    cell = p.cells["us"]
    before = cell.vault.primary_data_key_id(who.account_id)
    result = keys.rotate_account_data(cell, who.account_id, clock=_Later(),  # type: ignore[arg-type]
                                      sleep=lambda _s: None)
    assert result.key_id != before and result.removed == (before,)
    assert result.reencrypted >= 5  # lookup secret, 3 key names, value, element, number
    assert keys.status(cell, who.account_id)["records_by_data_key"] == {str(result.key_id): 7}
    assert s.get("account", "k").value == {"v": 1}
    assert s.get("workflow", "list").value == ["x"]
    assert s.increment("execution", "n") == 6


def test_sweep_removes_what_ended_executions_left(platform):
    p = platform
    who = _account(p)
    wf = _flow(p, who, [{"name": "x", "connector": "transform", "input": {"expression": "1"}}])
    queued = execution_service.start(p.cells, p.clock, who, wf, None).id
    _storage(p, who, execution_id=queued).set("execution", "k", 1)
    _storage(p, who, execution_id="gone").append("execution", "k", 1)
    _storage(p, who, execution_id="gone").set("account", "kept", 1)
    assert sweep_ended_executions(p.cells["us"]) == 1
    assert _count(p, storage_items) == 0
    assert _storage(p, who, execution_id=queued).get("execution", "k").value == 1
    assert _storage(p, who).get("account", "kept").value == 1
