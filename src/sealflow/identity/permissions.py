"""Roles, permissions and the one `authorize()` (SPEC I1, DESIGN house rule 4). The whole
matrix is `MATRIX` below: change who may do what there, and nowhere else.

Roles rise in privilege, each holding everything of the ones below it:
- viewer   reads workflows, executions, authentications (never their secrets), members, and
           manages its own API tokens;
- operator also runs workflows and cancels or replays executions;
- builder  also writes workflows, authentications and stored data;
- admin    also manages members (not owners), settings, security policy, tokens, keys,
           data subject requests, and reads the audit trail;
- owner    also deletes the account, manages owners and SSO.
Platform staff are not members: their role holds only staff.access (asking for access
grants), and they see customer data only through a justified, time-bound grant (SPEC I7),
which acts as a viewer narrowed to GRANT_SCOPES: reads, never more.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

from sealflow.core.errors import SealflowError


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    BUILDER = "builder"
    OPERATOR = "operator"
    VIEWER = "viewer"


class StaffRole(StrEnum):
    STAFF = "staff"


class Permission(StrEnum):
    ACCOUNT_READ = "account.read"
    ACCOUNT_DELETE = "account.delete"
    SETTINGS_WRITE = "settings.write"  # retention and other account settings
    SECURITY_MANAGE = "security.manage"  # require a second factor, session timeouts
    SSO_MANAGE = "sso.manage"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"  # invite, remove, change roles below owner
    OWNERS_MANAGE = "owners.manage"  # make or unmake an owner
    WORKFLOWS_READ = "workflows.read"
    WORKFLOWS_WRITE = "workflows.write"  # validate, create, update, delete
    WORKFLOWS_RUN = "workflows.run"
    EXECUTIONS_READ = "executions.read"
    EXECUTIONS_MANAGE = "executions.manage"  # cancel, replay
    AUTHENTICATIONS_READ = "authentications.read"  # metadata only: secrets are never shown
    AUTHENTICATIONS_WRITE = "authentications.write"  # create, change, delete, connect, test
    STORAGE_READ = "storage.read"
    STORAGE_WRITE = "storage.write"
    TOKENS_OWN = "tokens.own"  # create, list and revoke one's own API tokens
    TOKENS_MANAGE = "tokens.manage"  # list and revoke every API token of the account
    KEYS_MANAGE = "keys.manage"  # rotate the account's keys
    AUDIT_READ = "audit.read"  # read and export the account's audit trail
    AUDIT_MANAGE = "audit.manage"  # stream the audit trail to a SIEM (audit sinks)
    SUBJECT_REQUESTS_MANAGE = "subject_requests.manage"  # export or erase a person (D5)
    STAFF_ACCESS = "staff.access"  # platform staff: request and use access grants (I7)
    STAFF_GRANTS_MANAGE = "staff_grants.manage"  # approve, deny, revoke staff grants (I7)


_RANK = (Role.VIEWER, Role.OPERATOR, Role.BUILDER, Role.ADMIN, Role.OWNER)


def _from(lowest: Role) -> frozenset[Role]:
    return frozenset(_RANK[_RANK.index(lowest) :])


_P = Permission
# Who holds each permission: the lowest role that does, and every role above it.
MATRIX: Mapping[Permission, frozenset[Role | StaffRole]] = {
    _P.ACCOUNT_READ: _from(Role.VIEWER),
    _P.ACCOUNT_DELETE: _from(Role.OWNER),
    _P.SETTINGS_WRITE: _from(Role.ADMIN),
    _P.SECURITY_MANAGE: _from(Role.ADMIN),
    # The identity provider decides who signs in as whom, so whoever configures it can
    # become any member, owners included: only owners.
    _P.SSO_MANAGE: _from(Role.OWNER),
    _P.MEMBERS_READ: _from(Role.VIEWER),
    _P.MEMBERS_MANAGE: _from(Role.ADMIN),
    _P.OWNERS_MANAGE: _from(Role.OWNER),
    _P.WORKFLOWS_READ: _from(Role.VIEWER),
    _P.WORKFLOWS_WRITE: _from(Role.BUILDER),
    _P.WORKFLOWS_RUN: _from(Role.OPERATOR),
    _P.EXECUTIONS_READ: _from(Role.VIEWER),
    _P.EXECUTIONS_MANAGE: _from(Role.OPERATOR),
    _P.AUTHENTICATIONS_READ: _from(Role.VIEWER),
    _P.AUTHENTICATIONS_WRITE: _from(Role.BUILDER),
    _P.STORAGE_READ: _from(Role.VIEWER),
    _P.STORAGE_WRITE: _from(Role.BUILDER),
    # A token never holds more than its maker (services.tokens), so every member may make them.
    _P.TOKENS_OWN: _from(Role.VIEWER),
    _P.TOKENS_MANAGE: _from(Role.ADMIN),
    _P.KEYS_MANAGE: _from(Role.ADMIN),
    _P.AUDIT_READ: _from(Role.ADMIN),
    _P.AUDIT_MANAGE: _from(Role.ADMIN),
    _P.SUBJECT_REQUESTS_MANAGE: _from(Role.ADMIN),
    # Platform staff only (the operator's list, services.staff_members), never a member.
    _P.STAFF_ACCESS: frozenset({StaffRole.STAFF}),
    # Who lets platform staff into the account's data: owners, as for SSO.
    _P.STAFF_GRANTS_MANAGE: _from(Role.OWNER),
}

# What a staff access grant may reach in the customer's account (I7): the viewer's reads of
# its data, nothing that changes anything (no tokens of its own, no settings), whatever the
# viewer role holds in later versions. The grant's Caller carries these as its scopes.
GRANT_SCOPES: frozenset[str] = frozenset(p.value for p in (
    _P.ACCOUNT_READ, _P.MEMBERS_READ, _P.WORKFLOWS_READ, _P.EXECUTIONS_READ,
    _P.AUTHENTICATIONS_READ, _P.STORAGE_READ))


class Forbidden(SealflowError):
    """The caller is signed in but its role does not allow this (HTTP 403)."""

    code = "forbidden"

    def __init__(self, role: str, permission: Permission, message: str | None = None) -> None:
        super().__init__(message or f"the {role} role does not have {permission.value}")
        self.role = role
        self.permission = permission

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "permission": self.permission.value}


def role_permissions(role: Role | StaffRole | str) -> frozenset[Permission]:
    """Everything `role` may do; nothing for staff or for a role this version does not know."""
    return frozenset(p for p, roles in MATRIX.items() if role in roles)


def permissions_of(
    role: Role | StaffRole | str, scopes: Collection[str] | None
) -> frozenset[Permission]:
    """What a caller may do: its role's permissions, narrowed to `scopes` (an API token's
    permission names) unless None (a session, or a token scoped to all of its role)."""
    held = role_permissions(role)
    return held if scopes is None else frozenset(p for p in held if p.value in scopes)


def lower_role(a: Role | StaffRole | str, b: Role | StaffRole | str) -> str:
    """The less privileged of two roles (an API token acts with the lower of the role it was
    made with and its maker's role now). A role this version does not know wins: it holds
    nothing, so the result fails closed."""
    if a not in _RANK:
        return str(a)
    if b not in _RANK:
        return str(b)
    return str(min(Role(a), Role(b), key=_RANK.index).value)


def has_permission(
    role: Role | StaffRole | str, permission: Permission, scopes: Collection[str] | None = None
) -> bool:
    return role in MATRIX.get(permission, frozenset()) and (
        scopes is None or permission.value in scopes)


def authorize(
    role: Role | StaffRole | str, permission: Permission, scopes: Collection[str] | None = None
) -> None:
    """Return if `role` holds `permission` and, for a scoped API token, `scopes` (permission
    names; None: no narrowing) include it, else raise Forbidden naming it. Fails closed: an
    unknown role (a value stored by a newer version, a typo) holds nothing."""
    if role not in MATRIX.get(permission, frozenset()):
        raise Forbidden(str(role), permission)
    if scopes is not None and permission.value not in scopes:
        raise Forbidden(str(role), permission,
                        f"this API token's scopes do not include {permission.value}")


def authorize_role_change(
    actor: Role | StaffRole | str, old: Role | None, new: Role | None,
    scopes: Collection[str] | None = None,
) -> None:
    """May `actor` change a member's role from `old` to `new` (None: not a member, i.e. an
    invitation or a removal)? Members below owner need members.manage; making or unmaking an
    owner needs owners.manage; `scopes` narrows both, as in authorize(). (Keeping at least one
    owner is the store's rule.)"""
    authorize(actor, Permission.MEMBERS_MANAGE, scopes)
    if Role.OWNER in (old, new):
        authorize(actor, Permission.OWNERS_MANAGE, scopes)
