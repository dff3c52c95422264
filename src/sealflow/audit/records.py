"""The audit event catalogue and the record body. Pure: no I/O, no keys held.

Records carry no secrets and no personal data in clear: people appear as pseudonyms (an
HMAC-SHA256 under a per-account key, `pseudonym()`) or as sealed values the caller encrypted
under the account key. Erasing a person destroys that key or mapping; the record bytes, and
so the chain, stay as they were."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

RECORD_VERSION = 1


class Action(StrEnum):
    # logins and sessions
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGOUT = "login.logout"
    SESSION_REVOKED = "session.revoked"
    TOKEN_CREATED = "token.created"  # noqa: S105 (an event name)
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    SECOND_FACTOR_CHANGED = "second_factor.changed"
    # members, roles, settings
    MEMBER_INVITED = "member.invited"
    MEMBER_JOINED = "member.joined"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    SETTINGS_CHANGED = "settings.changed"
    # workflows
    WORKFLOW_CREATED = "workflow.created"
    WORKFLOW_CHANGED = "workflow.changed"
    WORKFLOW_DELETED = "workflow.deleted"
    # authentications (secrets) and execution data
    AUTHENTICATION_CREATED = "authentication.created"
    AUTHENTICATION_CHANGED = "authentication.changed"
    AUTHENTICATION_DELETED = "authentication.deleted"
    AUTHENTICATION_DECRYPTED = "authentication.decrypted"
    EXECUTION_DATA_READ = "execution.data_read"
    # staff access
    STAFF_ACCESS_GRANTED = "staff.access_granted"
    STAFF_ACCESS_REVOKED = "staff.access_revoked"
    STAFF_ACCESS_USED = "staff.access_used"
    STAFF_ADDED = "staff.added"  # the operator put a member on the platform staff list
    STAFF_REMOVED = "staff.removed"
    # data lifecycle
    EXPORT = "data.exported"
    ERASURE = "data.erased"
    PURGE = "data.purged"
    ACCOUNT_DELETED = "account.deleted"
    # keys and operations
    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"
    KEY_RETIRED = "key.retired"
    KEY_DESTROYED = "key.destroyed"
    BACKUP_TAKEN = "backup.taken"
    BACKUP_RESTORED = "backup.restored"
    BACKUP_DELETED = "backup.deleted"
    AUDIT_KEY_CREATED = "audit.key_created"
    # SIEM streaming of the account's trail (siem/)
    AUDIT_SINK_CREATED = "audit_sink.created"
    AUDIT_SINK_DELETED = "audit_sink.deleted"


class ActorKind(StrEnum):
    USER = "user"
    TOKEN = "token"  # noqa: S105 (an actor kind)
    STAFF = "staff"
    OPERATOR = "operator"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str  # an opaque id (uuid) or a pseudonym; never an e-mail or a name


SYSTEM = Actor(ActorKind.SYSTEM, "sealflow")
OPERATOR = Actor(ActorKind.OPERATOR, "cli")  # whoever runs the `sealflow` command on the host


@dataclass(frozen=True)
class AuditEvent:
    region: str
    account_id: str | None
    actor: Actor
    action: Action
    target: str  # "workflow:<id>", "authentication:<id>", ...
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)  # JSON; no secrets, no clear PII

    def body(self, seq: int) -> dict[str, Any]:
        """The record as it is canonicalised, hashed and chained (`seq` inside: a record moved
        to another position no longer matches its place)."""
        return {
            "v": RECORD_VERSION,
            "seq": seq,
            "region": self.region,
            "account_id": self.account_id,
            "actor": {"kind": self.actor.kind.value, "id": self.actor.id},
            "action": self.action.value,
            "target": self.target,
            "at": format_time(self.at),
            "details": self.details,
        }


def format_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime given to the audit log; use the injected clock")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def pseudonym(key: bytes, value: str) -> str:
    """A keyed hash of a personal value (an e-mail, an IP address): the same person gives the
    same pseudonym under one key, and destroying the key leaves it unlinkable."""
    if len(key) < 16:
        raise ValueError("pseudonym key too short")
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
