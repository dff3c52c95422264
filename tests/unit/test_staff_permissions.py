"""The pure parts of staff access (I7): what a grant may reach, whom the audit trail names
for a grant caller, the approval policy, and a grant's shown status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from sealflow.audit.records import Actor, ActorKind
from sealflow.identity.permissions import (
    GRANT_SCOPES,
    Forbidden,
    Permission,
    Role,
    StaffRole,
    authorize,
    permissions_of,
    role_permissions,
)
from sealflow.services.accounts import Caller
from sealflow.services.staff_access import Status, requires_approval, status_of

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_grant_reaches_only_reads_a_viewer_holds() -> None:
    granted = permissions_of(Role.VIEWER, GRANT_SCOPES)
    assert {p.value for p in granted} == GRANT_SCOPES  # every scope is a viewer's
    assert granted < role_permissions(Role.VIEWER)  # and not all of them (no tokens)
    assert all(p.value.endswith(".read") for p in granted)
    for permission in Permission:
        if permission.value not in GRANT_SCOPES:
            with pytest.raises(Forbidden):
                authorize(Role.VIEWER, permission, GRANT_SCOPES)


def test_only_staff_hold_staff_access_and_only_owners_manage_grants() -> None:
    authorize(StaffRole.STAFF, Permission.STAFF_ACCESS)
    for role in Role:
        with pytest.raises(Forbidden):
            authorize(role, Permission.STAFF_ACCESS)
    authorize(Role.OWNER, Permission.STAFF_GRANTS_MANAGE)
    with pytest.raises(Forbidden):
        authorize(Role.ADMIN, Permission.STAFF_GRANTS_MANAGE)
    with pytest.raises(Forbidden):
        authorize(StaffRole.STAFF, Permission.STAFF_GRANTS_MANAGE)


def test_the_audit_trail_names_staff_under_a_grant() -> None:
    base = Caller(region="us", account_id="a", token_id="session:s", role="viewer",
                  user_id="u1")
    assert base.actor == Actor(ActorKind.USER, "u1")
    granted = Caller(region="us", account_id="a", token_id="session:s", role="viewer",
                     user_id="u1", scopes=GRANT_SCOPES, grant_id="us_g")
    assert granted.actor == Actor(ActorKind.STAFF, "u1")
    token = Caller(region="us", account_id="a", token_id="t1")
    assert token.actor == Actor(ActorKind.TOKEN, "t1")


@pytest.mark.parametrize(("settings", "expected"), [
    (None, False), ("{}", False), ('{"staff": {}}', False),
    ('{"staff": {"require_approval": false}}', False),
    ('{"staff": {"require_approval": true}}', True),
    ('{"staff": {"require_approval": "yes"}}', False),
    ('{"staff": true}', False), ("[]", False),
    ("not json", True),  # unreadable: the stricter policy
])
def test_the_approval_policy(settings: str | None, expected: bool) -> None:
    assert requires_approval(settings) is expected


@pytest.mark.parametrize(("stored", "offset", "shown"), [
    ("active", -1, Status.ACTIVE), ("active", 0, Status.EXPIRED),
    ("pending", -1, Status.PENDING), ("pending", 1, Status.EXPIRED),
    ("denied", 1, Status.DENIED), ("revoked", -1, Status.REVOKED),
])
def test_a_grant_past_its_expiry_shows_expired(stored: str, offset: int, shown: Status
                                               ) -> None:
    row = SimpleNamespace(status=stored, expires_at=NOW)
    assert status_of(row, NOW + timedelta(seconds=offset)) is shown
