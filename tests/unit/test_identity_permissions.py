"""The permission matrix (SPEC I1) and `authorize()`. The table below is written out by hand on
purpose: any change to the matrix must change this test too."""

from __future__ import annotations

import itertools

import pytest

from sealflow.core.errors import SealflowError
from sealflow.identity.permissions import (
    MATRIX,
    Forbidden,
    Permission,
    Role,
    StaffRole,
    authorize,
    authorize_role_change,
    has_permission,
    lower_role,
    permissions_of,
    role_permissions,
)

ROLES = ("owner", "admin", "builder", "operator", "viewer")
Y, N = True, False

# fmt: off
# permission                  owner admin builder operator viewer
EXPECTED: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    "account.read":             (Y, Y, Y, Y, Y),
    "account.delete":           (Y, N, N, N, N),
    "settings.write":           (Y, Y, N, N, N),
    "security.manage":          (Y, Y, N, N, N),
    "sso.manage":               (Y, N, N, N, N),
    "members.read":             (Y, Y, Y, Y, Y),
    "members.manage":           (Y, Y, N, N, N),
    "owners.manage":            (Y, N, N, N, N),
    "workflows.read":           (Y, Y, Y, Y, Y),
    "workflows.write":          (Y, Y, Y, N, N),
    "workflows.run":            (Y, Y, Y, Y, N),
    "executions.read":          (Y, Y, Y, Y, Y),
    "executions.manage":        (Y, Y, Y, Y, N),
    "authentications.read":     (Y, Y, Y, Y, Y),
    "authentications.write":    (Y, Y, Y, N, N),
    "storage.read":             (Y, Y, Y, Y, Y),
    "storage.write":            (Y, Y, Y, N, N),
    "tokens.own":               (Y, Y, Y, Y, Y),
    "tokens.manage":            (Y, Y, N, N, N),
    "keys.manage":              (Y, Y, N, N, N),
    "audit.read":               (Y, Y, N, N, N),
    "audit.manage":             (Y, Y, N, N, N),
    "subject_requests.manage":  (Y, Y, N, N, N),
    "staff.access":             (N, N, N, N, N),  # platform staff only (StaffRole.STAFF)
    "staff_grants.manage":      (Y, N, N, N, N),
}
# fmt: on


def test_the_table_covers_every_permission_and_role() -> None:
    assert set(EXPECTED) == {p.value for p in Permission}
    assert set(MATRIX) == set(Permission)
    assert tuple(r.value for r in Role) == ROLES


@pytest.mark.parametrize("permission", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_every_role_and_permission(role: str, permission: str) -> None:
    expected = EXPECTED[permission][ROLES.index(role)]
    assert has_permission(Role(role), Permission(permission)) is expected
    assert (Permission(permission) in role_permissions(Role(role))) is expected
    if expected:
        authorize(Role(role), Permission(permission))
        authorize(role, Permission(permission))  # the stored string works as well
    else:
        with pytest.raises(Forbidden):
            authorize(Role(role), Permission(permission))


def test_each_role_holds_everything_of_the_roles_below_it() -> None:
    held = [role_permissions(Role(r)) for r in ROLES]
    for higher, lower in itertools.pairwise(held):
        assert lower < higher


def test_forbidden_names_the_role_and_the_permission() -> None:
    with pytest.raises(Forbidden) as caught:
        authorize(Role.VIEWER, Permission.WORKFLOWS_WRITE)
    error = caught.value
    assert isinstance(error, SealflowError)
    assert error.code == "forbidden" and not error.retryable
    assert "viewer" in error.message and "workflows.write" in error.message
    assert error.as_dict() == {
        "code": "forbidden",
        "message": "the viewer role does not have workflows.write",
        "retryable": False,
        "permission": "workflows.write",
    }
    assert (error.role, error.permission) == ("viewer", Permission.WORKFLOWS_WRITE)


@pytest.mark.parametrize("role", [StaffRole.STAFF, "staff", "superuser", "OWNER", "", "root"])
def test_staff_and_unknown_roles_hold_nothing(role: str) -> None:
    """Nothing of a customer account: platform staff hold staff.access alone (asking for an
    access grant, I7), unknown roles nothing at all."""
    staff = role == StaffRole.STAFF
    assert role_permissions(role) == (frozenset({Permission.STAFF_ACCESS}) if staff
                                      else frozenset())
    for permission in Permission:
        if staff and permission is Permission.STAFF_ACCESS:
            authorize(role, permission)
            continue
        assert not has_permission(role, permission)
        with pytest.raises(Forbidden):
            authorize(role, permission)


@pytest.mark.parametrize(
    ("actor", "old", "new", "allowed"),
    [
        (Role.OWNER, None, Role.OWNER, True),  # invite an owner
        (Role.OWNER, Role.OWNER, Role.ADMIN, True),  # unmake an owner
        (Role.OWNER, Role.VIEWER, None, True),  # remove a member
        (Role.ADMIN, None, Role.ADMIN, True),
        (Role.ADMIN, Role.BUILDER, Role.VIEWER, True),
        (Role.ADMIN, Role.ADMIN, None, True),
        (Role.ADMIN, None, Role.OWNER, False),  # an admin cannot make an owner
        (Role.ADMIN, Role.OWNER, Role.ADMIN, False),  # nor demote one
        (Role.ADMIN, Role.OWNER, None, False),  # nor remove one
        (Role.BUILDER, None, Role.VIEWER, False),
        (Role.VIEWER, Role.VIEWER, None, False),
        (StaffRole.STAFF, None, Role.VIEWER, False),
    ],
)
def test_role_changes(
    actor: Role | StaffRole, old: Role | None, new: Role | None, allowed: bool
) -> None:
    if allowed:
        authorize_role_change(actor, old, new)
    else:
        with pytest.raises(Forbidden):
            authorize_role_change(actor, old, new)


def test_scopes_narrow_a_role_never_widen_it() -> None:
    """An API token's scopes (permission names): what it may do is its role's permissions
    within them; a scope the role lacks gives nothing."""
    scopes = {"workflows.read", "workflows.write", "account.delete"}
    assert permissions_of(Role.BUILDER, scopes) == {Permission.WORKFLOWS_READ,
                                                    Permission.WORKFLOWS_WRITE}
    assert permissions_of(Role.BUILDER, None) == role_permissions(Role.BUILDER)
    assert permissions_of("superuser", scopes) == frozenset()
    assert has_permission(Role.BUILDER, Permission.WORKFLOWS_READ, scopes)
    assert not has_permission(Role.BUILDER, Permission.WORKFLOWS_RUN, scopes)
    assert not has_permission(Role.BUILDER, Permission.ACCOUNT_DELETE, scopes)
    authorize(Role.BUILDER, Permission.WORKFLOWS_WRITE, scopes)
    with pytest.raises(Forbidden) as caught:
        authorize(Role.BUILDER, Permission.WORKFLOWS_RUN, scopes)
    assert caught.value.message == "this API token's scopes do not include workflows.run"
    assert caught.value.as_dict()["permission"] == "workflows.run"
    with pytest.raises(Forbidden) as caught:  # the role decides first
        authorize(Role.BUILDER, Permission.ACCOUNT_DELETE, scopes)
    assert caught.value.message == "the builder role does not have account.delete"
    with pytest.raises(Forbidden):
        authorize(Role.OWNER, Permission.WORKFLOWS_READ, frozenset())


def test_role_changes_within_scopes() -> None:
    authorize_role_change(Role.OWNER, Role.VIEWER, Role.ADMIN, {"members.manage"})
    with pytest.raises(Forbidden):  # making an owner needs owners.manage in the scopes too
        authorize_role_change(Role.OWNER, Role.ADMIN, Role.OWNER, {"members.manage"})
    with pytest.raises(Forbidden):
        authorize_role_change(Role.OWNER, Role.VIEWER, Role.ADMIN, {"owners.manage"})


@pytest.mark.parametrize(
    ("a", "b", "lower"),
    [
        (Role.OWNER, Role.VIEWER, "viewer"),
        ("viewer", "owner", "viewer"),
        ("admin", "builder", "builder"),
        ("operator", "operator", "operator"),
        ("owner", "superuser", "superuser"),  # an unknown role wins: it holds nothing
        ("superuser", "owner", "superuser"),
        (StaffRole.STAFF, Role.OWNER, "staff"),
    ],
)
def test_lower_role(a: str, b: str, lower: str) -> None:
    assert lower_role(a, b) == lower
