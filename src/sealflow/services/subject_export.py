"""Everything sealflow holds about one member, as a JSON archive (D5, GDPR art. 15/20, CCPA
right to know). Also `footprint()`: the identifiers erasure looks for (services.subject_erasure).

What is stored about a person, table by table (db/tables*.py; services.subject_coverage has
the same list as data, and tests/integration/test_subject_requests.py checks that every table
of the schema is either covered or listed as not about a person, with the reason):

- users: e-mail and name (sealed), role, created, disabled; that a password is set (never its
  hash), that a second factor is on and since when (never the TOTP secret), the e-mail's login
  lookup hash (a keyed hash, not the address).
- recovery_codes: how many unused codes are left (the codes are kept hashed; never shown).
- sessions: created, last seen, expiry, revoked, how they signed in; the public session id.
  Sessions store no client address: the pseudonymised address their login's audit entry
  recorded is shown with each.
- api_tokens made by the member: metadata only (name, role, scopes, dates), never the token
  or its hash.
- sso_identities: the keyed hash of (issuer, subject) the member signs in with, and when.
- invitations: those sent to the member's e-mail (role, dates, who invited), and those the
  member sent (role and dates, without the invitee's address: another person's data).
- login_failures: the failed attempts kept under the member's id, their e-mail's lookup hash,
  their second factor, and the address pseudonyms they logged in from (time and kind).
- authentications the member owns (`owner_id`): name, type, shared or personal, status,
  settings and dates; never the secret.
- audit_records: every entry whose actor is the member (or one of their tokens) or whose
  target is `user:<id>`, read through sealflow.audit.log.iter_records.
- workflows: the schema records no creator. The audit trail does: workflows whose
  workflow.created / changed / deleted entries name the member as actor are listed (id, name,
  dates), not their documents (the account's work, not data about the member).
- subject_requests about the member: kind, law, status, dates.
- accounts: the membership (account id, name, region, role, since).
- platform_staff, staff_grants (I7): whether the member is platform staff; the access grants
  they asked for as staff or decided as owner (not the justification: the customer's record),
  with the number of reads under each (staff_grant_reads).
- audit_sinks they set up (name, kind, date; not the destination or its key), alert_state
  rows whose key names them or their address pseudonyms.
Not about a person (subject_coverage.NOT_ABOUT_A_PERSON): workflow documents, executions and
step runs, stored data, schedules, OAuth/SSO states, SSO provider settings, deletion records,
audit checkpoints, purge records, monitoring cursors.
Executions and stored values may well hold personal data of the account's own customers; that
data is the account's (the controller's) and is not attributed to any member, so it cannot be
exported per member: retention (D3) and account deletion (D4) govern it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select

from sealflow.audit.log import iter_records
from sealflow.core.errors import NotFound
from sealflow.db.sealed import open_
from sealflow.db.tables import (
    accounts,
    api_tokens,
    authentications,
    invitations,
    login_failures,
    recovery_codes,
    sessions,
    sso_identities,
    users,
    workflows,
)
from sealflow.db.tables_monitoring import alert_state, audit_sinks
from sealflow.db.tables_staff import platform_staff, staff_grant_reads, staff_grants
from sealflow.db.tables_subject_requests import subject_requests
from sealflow.regions.cells import Cell
from sealflow.services.sessions import public_id
from sealflow.services.sso import NO_PASSWORD

FORMAT = "sealflow.subject-export"
VERSION = 1
_IP_PSEUDONYM = re.compile(r"^ip_[0-9a-f]{16}$")
_WORKFLOW_ACTIONS = {"workflow.created": "created", "workflow.changed": "changed",
                     "workflow.deleted": "deleted"}

@dataclass(frozen=True)
class Footprint:
    """The identifiers of one member, as erasure and the log scrub need them."""

    user_id: str
    email: str
    name: str
    email_hash: str
    role: str
    token_ids: frozenset[str]
    session_ids: frozenset[str]  # public ids
    ip_pseudonyms: frozenset[str]

    def failure_keys(self) -> list[str]:
        """The login_failures keys that are this person's (services.login, second_factor)."""
        keys = [f"user:{self.user_id}", f"totp:{self.user_id}",
                *(f"ip:{p}" for p in sorted(self.ip_pseudonyms))]
        return keys + ([f"email:{self.email_hash[:40]}"] if self.email_hash else [])


def _member(conn: Connection, account_id: str, user_id: str) -> Any:
    row = conn.execute(select(users).where(users.c.id == user_id,
                                           users.c.account_id == account_id)).first()
    if row is None:
        raise NotFound(f"member {user_id} not found in this account (erased already?)")
    return row


def audit_about(conn: Connection, account_id: str, user_id: str,
                token_ids: frozenset[str]) -> Iterator[dict[str, Any]]:
    """The account's audit records whose actor is the member (or one of their tokens) or
    whose target is the member, parsed, in order (the whole region's log, paged)."""
    actors = {user_id, *token_ids}
    target = f"user:{user_id}"
    for row in iter_records(conn):
        if row.account != account_id:
            continue
        record = json.loads(row.record)
        if record.get("target") == target or record.get("actor", {}).get("id") in actors:
            yield record


def _pseudonyms(records: list[dict[str, Any]]) -> frozenset[str]:
    found: set[str] = set()
    for record in records:
        details = record.get("details") or {}
        for value in details.values() if isinstance(details, dict) else ():
            if isinstance(value, str) and _IP_PSEUDONYM.match(value):
                found.add(value)
    return frozenset(found)


def footprint(cell: Cell, conn: Connection, account_id: str, user_id: str, *,
              missing_ok: bool = False) -> Footprint:
    """The member's identifiers. `missing_ok`: a member already removed (members.remove
    leaves their tokens, SSO identities and audit entries) gives what is left: no e-mail,
    no name."""
    try:
        row = _member(conn, account_id, user_id)
    except NotFound:
        if not missing_ok:
            raise
        row = None
    token_ids = frozenset(conn.execute(select(api_tokens.c.id).where(
        api_tokens.c.user_id == user_id, api_tokens.c.account_id == account_id)).scalars())
    session_ids = frozenset(public_id(h) for h in conn.execute(
        select(sessions.c.id_hash).where(sessions.c.user_id == user_id)).scalars())
    records = list(audit_about(conn, account_id, user_id, token_ids))
    vault = cell.vault
    return Footprint(
        user_id=user_id,
        email="" if row is None else open_(vault, account_id, users.name, user_id, "email",
                                           row.email),
        name="" if row is None else open_(vault, account_id, users.name, user_id, "name",
                                          row.name),
        email_hash="" if row is None else row.email_hash,
        role="" if row is None else row.role, token_ids=token_ids,
        session_ids=session_ids | {str(r["details"]["session"]) for r in records
                                   if isinstance(r.get("details"), dict)
                                   and isinstance(r["details"].get("session"), str)},
        ip_pseudonyms=_pseudonyms(records))


def build_archive(cell: Cell, conn: Connection, account_id: str, user_id: str,
                  now: datetime) -> dict[str, Any]:
    """The archive (JSON-ready: datetimes as ISO 8601 text)."""
    row = _member(conn, account_id, user_id)
    vault = cell.vault
    email = open_(vault, account_id, users.name, user_id, "email", row.email)
    tokens = conn.execute(select(api_tokens).where(
        api_tokens.c.user_id == user_id, api_tokens.c.account_id == account_id)
        .order_by(api_tokens.c.created_at)).all()
    token_ids = frozenset(t.id for t in tokens)
    audit = list(audit_about(conn, account_id, user_id, token_ids))
    account = conn.execute(select(accounts).where(accounts.c.id == account_id)).one()
    # Sessions keep no address: the pseudonym their login's audit entry recorded, if any.
    clients = {str(r["details"]["session"]): r["details"].get("client") for r in audit
               if r.get("action") == "login.succeeded" and isinstance(r.get("details"), dict)
               and isinstance(r["details"].get("session"), str)}
    data: dict[str, Any] = {
        "users": {
            "id": user_id, "email": email,
            "name": open_(vault, account_id, users.name, user_id, "name", row.name),
            "role": row.role, "created_at": row.created_at, "disabled_at": row.disabled_at,
            "password_set": row.password_hash != NO_PASSWORD,
            "totp_enabled_at": row.totp_enabled_at,
            "login_lookup_hash": row.email_hash,
        },
        "recovery_codes": {"recovery_codes_left": conn.execute(
            select(func.count()).select_from(recovery_codes)
            .where(recovery_codes.c.user_id == user_id)).scalar_one()},
        "accounts": [{"account_id": account.id, "name": account.name,
                      "region": account.region, "role": row.role, "since": row.created_at}],
        "sessions": [
            {"id": public_id(s.id_hash), "created_at": s.created_at,
             "last_seen_at": s.last_seen_at, "expires_at": s.expires_at,
             "revoked_at": s.revoked_at, "method": s.method,
             "client": clients.get(public_id(s.id_hash))}
            for s in conn.execute(select(sessions).where(sessions.c.user_id == user_id)
                                  .order_by(sessions.c.created_at))],
        "api_tokens": [
            {"id": t.id, "name": t.name, "role": t.role,
             "scopes": None if t.scopes is None else json.loads(t.scopes),
             "created_at": t.created_at, "last_used_at": t.last_used_at,
             "expires_at": t.expires_at, "revoked_at": t.revoked_at} for t in tokens],
        "sso_identities": [
            {"account_id": i.account_id, "subject_hash": i.subject_hash,
             "created_at": i.created_at}
            for i in conn.execute(select(sso_identities)
                                  .where(sso_identities.c.user_id == user_id))],
        "invitations": _invitations(cell, conn, account_id, user_id, email),
        "login_failures": _failures(conn, row, _pseudonyms(audit)),
        "authentications": _authentications(cell, conn, account_id, user_id),
        "audit_records": audit,
        "workflows": _workflows(conn, account_id, audit),
        **_staff_and_monitoring(conn, account_id, user_id, _pseudonyms(audit)),
        "subject_requests": [
            {"id": r.id, "kind": r.kind, "law": r.law, "status": r.status,
             "requested_by": r.requested_by, "received_at": r.received_at,
             "due_at": r.due_at, "completed_at": r.completed_at,
             "outcome": None if r.outcome is None else json.loads(r.outcome)}
            for r in conn.execute(select(subject_requests).where(
                subject_requests.c.user_id == user_id,
                subject_requests.c.account_id == account_id)
                .order_by(subject_requests.c.received_at))],
    }
    archive: dict[str, Any] = _jsonable({
        "format": FORMAT, "version": VERSION, "generated_at": now,
        "region": cell.region, "account_id": account_id, "subject": {"member_id": user_id},
        "notes": {
            "workflows": "workflows record no creator; these are the workflows the audit "
                         "trail shows you creating, changing or deleting",
            "sessions": "sessions store no client address; the pseudonymised address of "
                        "each login is in its audit entry",
            "not_included": "workflow documents, executions and stored data belong to the "
                            "account and are attributed to no member",
        },
        "data": data,
    })
    return archive


def _staff_and_monitoring(conn: Connection, account_id: str, user_id: str,
                          ips: frozenset[str]) -> dict[str, Any]:
    staff = conn.execute(select(platform_staff).where(
        platform_staff.c.user_id == user_id)).first()
    grants = conn.execute(select(staff_grants).where(or_(
        staff_grants.c.staff_user_id == user_id, staff_grants.c.decided_by == user_id))
        .order_by(staff_grants.c.requested_at)).all()
    counted = conn.execute(select(staff_grant_reads.c.grant_id, func.count())
                           .where(staff_grant_reads.c.grant_id.in_([g.id for g in grants]))
                           .group_by(staff_grant_reads.c.grant_id)).all()
    reads = {str(r[0]): int(r[1]) for r in counted}
    return {
        "platform_staff": None if staff is None else {
            "account_id": staff.account_id, "added_at": staff.added_at,
            "added_by": staff.added_by},
        "staff_grants": [
            {"id": g.id, "account_id": g.account_id, "you": "staff member"
             if g.staff_user_id == user_id else "decided", "staff_region": g.staff_region,
             "staff_account_id": g.staff_account_id, "status": g.status,
             "requested_at": g.requested_at, "expires_at": g.expires_at,
             "decided_at": g.decided_at, "revoked_at": g.revoked_at,
             "revoked_by": g.revoked_by} for g in grants],
        "staff_grant_reads": [{"grant_id": k, "reads": v} for k, v in sorted(reads.items())],
        "audit_sinks": [
            {"id": a.id, "name": a.name, "kind": a.kind, "created_at": a.created_at}
            for a in conn.execute(select(audit_sinks).where(
                audit_sinks.c.account_id == account_id, audit_sinks.c.created_by == user_id))],
        "alert_state": [
            {"rule": a.rule, "key": a.key, "fired_at": a.fired_at, "fired": a.fired}
            for a in conn.execute(select(alert_state).where(alert_keys(user_id, ips)))],
    }


def alert_keys(user_id: str, ips: frozenset[str]) -> Any:
    """alert_state rows about the member: keys naming them or their address pseudonyms."""
    return or_(*(alert_state.c.key.contains(v, autoescape=True) for v in (user_id, *ips)))


def _invitations(cell: Cell, conn: Connection, account_id: str, user_id: str,
                 email: str) -> dict[str, list[dict[str, Any]]]:
    to_member, sent = [], []
    for inv in conn.execute(select(invitations).where(invitations.c.account_id == account_id)
                            .order_by(invitations.c.created_at)):
        item = {"id": inv.id, "role": inv.role, "created_at": inv.created_at,
                "expires_at": inv.expires_at, "accepted_at": inv.accepted_at}
        if open_(cell.vault, account_id, invitations.name, inv.id, "email", inv.email) == email:
            to_member.append({**item, "email": email, "invited_by": inv.invited_by})
        if inv.invited_by == user_id:
            sent.append(item)  # the invitee's address is theirs, not the member's
    return {"to_you": to_member, "sent_by_you": sent}


def _failures(conn: Connection, row: Any, ips: frozenset[str]) -> list[dict[str, Any]]:
    kinds = {f"user:{row.id}": "password", f"totp:{row.id}": "second_factor",
             f"email:{row.email_hash[:40]}": "password (before you were a member)",
             **{f"ip:{p}": f"from address {p}" for p in ips}}
    rows = conn.execute(select(login_failures).where(login_failures.c.key.in_(list(kinds)))
                        .order_by(login_failures.c.at)).all()
    return [{"kind": kinds[r.key], "at": r.at} for r in rows]


def _authentications(cell: Cell, conn: Connection, account_id: str,
                     user_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(authentications).where(
        authentications.c.account_id == account_id, authentications.c.owner_id == user_id)
        .order_by(authentications.c.created_at)).all()
    return [{"id": a.id, "name": a.name, "type": a.type, "shared": a.shared,
             "status": a.status,
             "settings": open_(cell.vault, account_id, authentications.name, a.id, "config",
                               a.config),
             "created_at": a.created_at, "updated_at": a.updated_at,
             "last_used_at": a.last_used_at, "expires_at": a.expires_at} for a in rows]


def _workflows(conn: Connection, account_id: str,
               audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roles: dict[str, set[str]] = {}
    for record in audit:
        what = _WORKFLOW_ACTIONS.get(record.get("action", ""))
        target = str(record.get("target", ""))
        if what and target.startswith("workflow:"):
            roles.setdefault(target.removeprefix("workflow:"), set()).add(what)
    if not roles:
        return []
    rows = {w.id: w for w in conn.execute(select(workflows).where(
        workflows.c.account_id == account_id, workflows.c.id.in_(list(roles))))}
    out = []
    for wf_id in sorted(roles):
        w = rows.get(wf_id)
        item: dict[str, Any] = {"id": wf_id, "you": sorted(roles[wf_id])}
        if w is not None:
            item.update(name=w.name, trigger_type=w.trigger_type, enabled=w.enabled,
                        current_version=w.current_version, created_at=w.created_at,
                        updated_at=w.updated_at, deleted_at=w.deleted_at)
        out.append(item)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
