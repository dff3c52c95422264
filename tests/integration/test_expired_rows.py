"""Housekeeping removes rows whose use is over (services/expired_rows): connect states,
invitations and old login failures go; live ones stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from sealflow.bootstrap import build_cells, migrate_all
from sealflow.config import RegionSettings, Settings
from sealflow.db.tables import invitations, login_failures, oauth_states, sso_states
from sealflow.regions.cells import Cells
from sealflow.services.accounts import create_account
from sealflow.services.expired_rows import sweep_expired
from tests.support.clock import ManualClock


@pytest.fixture
def cells(tmp_path: Path) -> Iterator[Cells]:
    c = build_cells(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()}),
                    ManualClock())
    migrate_all(c)
    yield c
    c.dispose()


def test_ended_rows_go_and_live_ones_stay(cells: Cells) -> None:
    clock = ManualClock()
    account, _ = create_account(cells, clock, name="Sweep", region="us")
    now = clock.now()
    past, future = now - timedelta(minutes=1), now + timedelta(minutes=5)
    with cells["us"].write() as conn:
        for n, when in enumerate((past, future)):
            conn.execute(insert(oauth_states).values(
                state_hash=f"o{n}", account_id=account.id, authentication_id="a",
                verifier="v", expires_at=when))
            conn.execute(insert(sso_states).values(
                state_hash=f"s{n}", account_id=account.id, verifier="v", nonce="n",
                browser_hash="b", expires_at=when))
            conn.execute(insert(invitations).values(
                id=f"i{n}", account_id=account.id, token_hash=f"t{n}", email="sealed",
                role="viewer", invited_by="x", created_at=now, expires_at=when))
        conn.execute(insert(login_failures).values(key="ip:x", at=now - timedelta(days=2)))
        conn.execute(insert(login_failures).values(key="ip:x", at=now - timedelta(minutes=5)))

    assert sweep_expired(cells["us"], clock) == 4
    with cells["us"].read() as conn:
        for table in (oauth_states, sso_states, invitations, login_failures):
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 1
    assert sweep_expired(cells["us"], clock) == 0
