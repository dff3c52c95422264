"""`keys rotate-data` in services.keys on a real cell (SQLite files, key file, Tink): every sealed
value of the account is re-encrypted under its new primary data key in batches, the older
keys are removed, other accounts are untouched; concurrent writers win their rows; values a
stale server cache sealed under the old key are caught; unreadable values stop the removal;
an interrupted run resumes."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Integer, delete, insert, select, update

from sealflow.audit.signing import Signer
from sealflow.audit.trail import AuditTrail
from sealflow.db import tables
from sealflow.db.engine import make_engine
from sealflow.db.sealed import DataUnreadable, open_, seal, step_row_id
from sealflow.db.tables import (
    accounts,
    authentications,
    executions,
    metadata,
    oauth_states,
    step_runs,
    workflow_versions,
    workflows,
)
from sealflow.regions.cells import Cell
from sealflow.services import keys
from sealflow.vault import keystore
from sealflow.vault.errors import DecryptionFailed, KeyVersionError
from sealflow.vault.keystore import KeyStore, default_keystore_url
from sealflow.vault.providers.local_file import LocalFileProvider
from sealflow.vault.vault import Vault

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TTL = 5.0


class Clock:
    def __init__(self) -> None:
        self.t = T0
        self.mono = 0.0

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never awaited here
        self.advance(seconds)


@dataclass
class Place:
    table: str
    pk: Any
    row_id: str
    column: str
    value: Any


@dataclass
class World:
    root: Path
    clock: Clock = field(default_factory=Clock)
    slept: list[float] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def __post_init__(self) -> None:
        engine = make_engine(f"sqlite:///{self.root / 'us.db'}")
        metadata.create_all(engine)
        ks_engine = make_engine(default_keystore_url(self.root, "us"))
        keystore.metadata.create_all(ks_engine)
        self.engines += [engine, ks_engine]
        self.store = KeyStore(ks_engine, self.clock)  # type: ignore[arg-type]
        self.provider = LocalFileProvider(self.root / "keys" / "us.kek.json")
        self.cell = Cell("us", engine, self.vault(), ks_engine, self.provider, self.store,
                         AuditTrail("us", Signer.generate()))

    def vault(self, ttl: float = TTL) -> Vault:
        return Vault("us", self.store, self.provider, self.clock, cache_ttl_s=ttl)  # type: ignore[arg-type]

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    def rotate(self, account: str, **kw: Any) -> keys.DataRotation:
        return keys.rotate_account_data(
            self.cell, account, clock=self.clock, sleep=self.sleep, **kw  # type: ignore[arg-type]
        )

    # -- data ------------------------------------------------------------------------------
    def account(self, executions_n: int = 3, vault: Vault | None = None) -> tuple[str, list[Place]]:
        """An account with one of everything sealed; returns where each value went."""
        v = vault or self.cell.vault
        a = str(uuid.uuid4())
        wf = str(uuid.uuid4())
        auth = str(uuid.uuid4())
        state = uuid.uuid4().hex
        places: list[Place] = []

        def sealed(table: str, pk: Any, row_id: str, column: str, value: Any) -> str:
            places.append(Place(table, pk, row_id, column, value))
            return seal(v, a, table, row_id, column, value)

        now = self.clock.now()
        with self.cell.write() as conn:
            conn.execute(insert(accounts).values(id=a, name="A", region="us", created_at=now))
            conn.execute(insert(workflows).values(
                id=wf, account_id=a, name="w", current_version=1, trigger_type="webhook",
                webhook_token=sealed("workflows", wf, wf, "webhook_token", "tok-" + a),
                webhook_secret=sealed("workflows", wf, wf, "webhook_secret", "hmac-" + a),
                enabled=True, created_at=now, updated_at=now))
            vid = conn.execute(insert(workflow_versions).values(
                workflow_id=wf, account_id=a, version=1, document="x", created_at=now,
            )).inserted_primary_key[0]
            conn.execute(update(workflow_versions).where(workflow_versions.c.id == vid).values(
                document=sealed("workflow_versions", vid, f"{wf}/v1", "document",
                                {"name": "w", "steps": []})))
            for i in range(executions_n):
                self.execution(conn, v, a, wf, places, i)
            conn.execute(insert(authentications).values(
                id=auth, account_id=a, name="api", type="api_key", owner_id="t", status="active",
                config=sealed("authentications", auth, auth, "config", {"header": "X-Key"}),
                secret=sealed("authentications", auth, auth, "secret", {"api_key": "k-" + a}),
                created_at=now, updated_at=now))
            conn.execute(insert(oauth_states).values(
                state_hash=state, account_id=a, authentication_id=auth,
                verifier=sealed("oauth_states", state, state, "verifier", "pkce-" + a),
                expires_at=now))
        return a, places

    def execution(self, conn: Any, v: Vault, a: str, wf: str, places: list[Place],
                  i: int) -> str:
        e = str(uuid.uuid4())
        now = self.clock.now()

        def sealed(table: str, pk: Any, row_id: str, column: str, value: Any) -> str:
            places.append(Place(table, pk, row_id, column, value))
            return seal(v, a, table, row_id, column, value)

        conn.execute(insert(executions).values(
            id=e, account_id=a, workflow_id=wf, workflow_version=1, status="succeeded",
            trigger_type="webhook", run_after=now, created_at=now,
            trigger_payload=sealed("executions", e, e, "trigger_payload", {"n": i}),
            result=sealed("executions", e, e, "result", {"sum": i * 2})))
        for seq, path in enumerate(("fetch", f"loop[{i}].post")):
            sid = conn.execute(insert(step_runs).values(
                execution_id=e, account_id=a, seq=seq, path=path, step_name="s",
                connector="http", operation="request", status="succeeded", started_at=now,
            )).inserted_primary_key[0]
            row_id = step_row_id(e, path)
            conn.execute(update(step_runs).where(step_runs.c.id == sid).values(
                input=sealed("step_runs", sid, row_id, "input", {"in": path}),
                output=sealed("step_runs", sid, row_id, "output", {"out": [i, seq]}),
                logs=sealed("step_runs", sid, row_id, "logs", [{"msg": f"line {i}"}])))
        return e

    def raw(self, place: Place) -> str:
        table = getattr(tables, place.table)
        key = next(iter(table.primary_key.columns))
        with self.cell.read() as conn:
            return str(conn.execute(
                select(table.c[place.column]).where(key == place.pk)).scalar_one())

    def read(self, account: str, place: Place) -> Any:
        return open_(self.cell.vault, account, place.table, place.row_id, place.column,
                     self.raw(place))


def key_of(text: str) -> int | None:
    return Vault.data_key_id(base64.urlsafe_b64decode(text))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    for engine in w.engines:
        engine.dispose()


def test_every_value_moves_to_the_new_key_and_the_old_key_is_gone(world: World) -> None:
    a, places = world.account(executions_n=5)
    b, b_places = world.account(executions_n=2)
    b_before = {(p.table, p.pk, p.column): world.raw(p) for p in b_places}
    b_keys = world.cell.vault.data_key_ids(b)
    old_key = world.cell.vault.primary_data_key_id(a)
    old_raw = {(p.table, p.pk, p.column): world.raw(p) for p in places}
    rows = len({(p.table, p.pk) for p in places})
    calls: list[tuple[int, int]] = []
    waits: list[float] = []
    result = world.rotate(a, batch_size=3, on_batch=lambda d, t: calls.append((d, t)),
                          on_wait=waits.append)

    assert result.key_id != old_key and not result.resumed and result.unreadable == ()
    assert result.reencrypted == rows == 19  # workflow, version, 5 executions, 10 steps, 2 more
    assert result.removed == (old_key,)
    assert calls[0] == (0, rows) and calls[-1] == (rows, rows)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) > 7  # batches
    # The server's cache may seal under the old key for TTL after the rotation: waited once.
    assert world.slept == waits == [pytest.approx(TTL + 1)]
    for p in places:
        assert key_of(world.raw(p)) == result.key_id, p
        assert world.read(a, p) == p.value, p
    status = keys.status(world.cell, a)
    assert status["data_keys"] == [result.key_id]
    assert status["records_by_data_key"] == {str(result.key_id): len(places)}
    # The old ciphertexts are unreadable now, even at their own place.
    p = places[0]
    with pytest.raises(DecryptionFailed):
        world.cell.vault.decrypt(a, p.table, p.row_id, p.column,
                                 base64.urlsafe_b64decode(old_raw[(p.table, p.pk, p.column)]))
    with pytest.raises(DataUnreadable):
        open_(world.cell.vault, a, p.table, p.row_id, p.column, old_raw[(p.table, p.pk, p.column)])
    # Another account is not touched.
    assert world.cell.vault.data_key_ids(b) == b_keys
    assert {(p.table, p.pk, p.column): world.raw(p) for p in b_places} == b_before
    region = keys.status(world.cell)["records_by_data_key"]
    assert region == {str(result.key_id): len(places), str(b_keys[0]): len(b_places)}


def test_running_it_again_rotates_again_and_reencrypt_is_idempotent(world: World) -> None:
    a, places = world.account(executions_n=1)
    first = world.rotate(a)
    again = keys.reencrypt_account(world.cell, a, clock=world.clock,  # type: ignore[arg-type]
                                   sleep=world.sleep)
    assert again.reencrypted == 0 and again.key_id == first.key_id
    assert world.slept == [pytest.approx(TTL + 1)]  # the second call had nothing to wait for
    second = world.rotate(a, drop_old=False)
    assert second.key_id != first.key_id and second.removed == ()
    assert world.cell.vault.data_key_ids(a) == (first.key_id, second.key_id)
    assert all(key_of(world.raw(p)) == second.key_id for p in places)


def test_a_concurrent_writer_wins_and_a_stale_one_is_caught(world: World) -> None:
    stale = world.vault(ttl=3600)  # a server whose cached keyset predates the rotation
    a, places = world.account(executions_n=3, vault=stale)
    vault = world.cell.vault
    real = vault.reencrypt
    trigger = [p for p in places if p.column == "trigger_payload"]
    fresh_place, stale_place = trigger[0], trigger[1]
    done: set[str] = set()

    def racing(account: str, table: str, row_id: Any, column: str, raw: bytes) -> bytes:
        out = real(account, table, row_id, column, raw)
        for place, writer, value in ((fresh_place, vault, {"n": "fresh"}),
                                     (stale_place, stale, {"n": "stale"})):
            if (table, row_id, column) == (place.table, place.row_id, place.column) and \
                    place.row_id not in done:
                done.add(place.row_id)  # the server writes the row between our read and write
                with world.cell.write() as conn:
                    conn.execute(update(executions).where(executions.c.id == place.pk).values(
                        trigger_payload=seal(writer, a, table, row_id, column, value)))
        return out

    vault.reencrypt = racing  # type: ignore[method-assign]
    extra: list[Place] = []

    def sleep_while_the_stale_server_writes(seconds: float) -> None:
        with world.cell.write() as conn:  # a new record, sealed under the old key meanwhile
            world.execution(conn, stale, a, places[0].pk, extra, 99)
        world.sleep(seconds)

    result = keys.rotate_account_data(world.cell, a, batch_size=2, clock=world.clock,  # type: ignore[arg-type]
                                      sleep=sleep_while_the_stale_server_writes)
    vault.reencrypt = real  # type: ignore[method-assign]
    assert done == {fresh_place.row_id, stale_place.row_id}
    assert extra and result.removed
    for p in places + extra:
        assert key_of(world.raw(p)) == result.key_id, p
    assert world.read(a, fresh_place) == {"n": "fresh"}
    assert world.read(a, stale_place) == {"n": "stale"}
    for p in places + extra:
        if p not in (fresh_place, stale_place):
            assert world.read(a, p) == p.value


def test_unreadable_values_are_reported_and_keep_the_old_keys(world: World) -> None:
    a, places = world.account(executions_n=2)
    one, two = [p for p in places if p.column == "trigger_payload"]
    moved = world.raw(one)
    with world.cell.write() as conn:  # a ciphertext moved to another row: it never opens
        conn.execute(update(executions).where(executions.c.id == two.pk).values(
            trigger_payload=moved))
    with pytest.raises(KeyVersionError, match="1 value") as refused:
        world.rotate(a)
    assert f"executions.trigger_payload of {two.pk}" in refused.value.message
    assert len(world.cell.vault.data_key_ids(a)) == 2  # kept
    result = keys.reencrypt_account(world.cell, a, clock=world.clock,  # type: ignore[arg-type]
                                    sleep=world.sleep)
    assert result.unreadable == (f"executions.trigger_payload of {two.pk}",)
    assert world.read(a, one) == one.value
    key_id = world.cell.vault.primary_data_key_id(a)
    with pytest.raises(KeyVersionError, match=r"1 record.* still sealed under older data keys"):
        keys.remove_old_data_keys(world.cell, a, key_id)
    with world.cell.write() as conn:  # the operator deletes the broken execution
        conn.execute(delete(step_runs).where(step_runs.c.execution_id == two.pk))
        conn.execute(delete(executions).where(executions.c.id == two.pk))
    assert keys.remove_old_data_keys(world.cell, a, key_id)
    assert world.cell.vault.data_key_ids(a) == (key_id,)


def test_an_interrupted_run_is_resumed_without_a_new_key(world: World) -> None:
    a, places = world.account(executions_n=4)
    first_key = world.cell.vault.primary_data_key_id(a)

    def stop(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        world.rotate(a, batch_size=2, on_batch=stop)
    new_key = world.cell.vault.primary_data_key_id(a)
    assert world.cell.vault.data_key_ids(a) == (first_key, new_key)
    result = world.rotate(a, batch_size=2)
    assert result.resumed and result.key_id == new_key and result.removed == (first_key,)
    assert 0 < result.reencrypted < len({(p.table, p.pk) for p in places})  # not twice
    assert all(key_of(world.raw(p)) == new_key for p in places)


def test_removal_refuses_when_the_key_was_rotated_meanwhile(world: World) -> None:
    a, _ = world.account(executions_n=1)
    old = world.cell.vault.primary_data_key_id(a)
    world.cell.vault.rotate_data_key(a)
    with pytest.raises(KeyVersionError, match="rotated meanwhile"):
        keys.remove_old_data_keys(world.cell, a, old)


def test_an_account_without_keys_or_data_gets_one_key(world: World) -> None:
    result = world.rotate("empty")
    assert result.reencrypted == 0 and len(result.removed) == 1
    assert world.cell.vault.data_key_ids("empty") == (result.key_id,)
    assert keys.status(world.cell, "nobody")["data_keys"] == []


def test_bad_arguments(world: World) -> None:
    with pytest.raises(ValueError):
        keys.reencrypt_account(world.cell, "a", batch_size=0)
    from sqlalchemy import Column, MetaData, Table

    two = Table("two", MetaData(), Column("a", Integer, primary_key=True),
                Column("b", Integer, primary_key=True))
    with pytest.raises(ValueError, match="one primary-key column"):
        keys.SealedTable(two, ("x",), str, ("a",))


def test_every_sealed_column_of_the_schema_is_listed() -> None:
    """A `# customer` / `# secret` Text column missing from SEALED_COLUMNS would be lost when
    `keys rotate-data` removes old keys."""
    # db/tables.py and the area modules it imports at its end (db/tables_<area>.py).
    source = "\n".join(f.read_text() for f in sorted(
        Path(tables.__file__).parent.glob("tables*.py")))
    marked: set[tuple[str, str]] = set()
    current = None
    for line in source.splitlines():
        name = re.match(r'^\s+"(\w+)",$', line)
        if name and current is None:
            current = name.group(1)
        if re.match(r"^\w+ = Table\($", line):
            current = None
        column = re.match(r'^\s+Column\("(\w+)", Text.*#\s*(customer|secret)', line)
        if column and current:
            marked.add((current, column.group(1)))
    listed = {(e.table.name, c) for e in keys.SEALED_COLUMNS for c in e.columns}
    assert len(marked) >= 14, marked
    assert listed == marked


def test_a_row_that_never_stops_changing_ends_in_a_clear_error(world: World) -> None:
    stale = world.vault(ttl=3600)
    a, places = world.account(executions_n=1, vault=stale)
    vault = world.cell.vault
    real = vault.reencrypt
    target = next(p for p in places if p.column == "trigger_payload")

    def always_racing(account: str, table: str, row_id: Any, column: str, raw: bytes) -> bytes:
        out = real(account, table, row_id, column, raw)
        if row_id == target.row_id:  # a stale server rewrites it every time, under the old key
            with world.cell.write() as conn:
                conn.execute(update(executions).where(executions.c.id == target.pk).values(
                    trigger_payload=seal(stale, a, "executions", row_id, "trigger_payload",
                                         {"n": "again"})))
        return out

    vault.reencrypt = always_racing  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyVersionError, match="kept changing"):
            world.rotate(a)
    finally:
        vault.reencrypt = real  # type: ignore[method-assign]
    assert len(vault.data_key_ids(a)) == 2  # nothing removed
    assert world.read(a, target) == {"n": "again"}


def test_status_counts_values_no_key_can_be_read_from(world: World) -> None:
    a, places = world.account(executions_n=1)
    key = world.cell.vault.primary_data_key_id(a)
    odd = ["short", "A=======" + "x" * 30, "é" * 40, "%" * 40]
    mine = [p for p in places if p.table == "step_runs"][: len(odd)]
    with world.cell.write() as conn:
        for p, text in zip(mine, odd, strict=True):
            conn.execute(update(step_runs).where(step_runs.c.id == p.pk).values(
                {p.column: text}))
    status = keys.status(world.cell, a)
    assert status["records_by_data_key"] == {str(key): len(places) - 4, "unknown": 4}
