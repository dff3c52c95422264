"""Audit sinks (A1 "streamed to a SIEM"): an account's admins point its audit trail at their
SIEM, by syslog over TLS or a signed HTTPS webhook. Create, list, delete; delivery is
siem.delivery's background task.

A webhook sink's HMAC key is made here (256 random bits), answered once at creation and kept
sealed (db/sealed.py): a listing shows only its fingerprint. Creating and deleting a sink are
audit records of the account (A2: in the same transaction)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, func, insert, select

from sealflow.audit.log import head
from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, LimitExceeded, NotFound
from sealflow.db.sealed import open_, seal
from sealflow.db.tables_monitoring import audit_sinks
from sealflow.regions.cells import Cell
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller

KINDS = ("syslog", "webhook")
SYSLOG_TLS_PORT = 6514  # RFC 5425
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


@dataclass(frozen=True)
class SinkView:
    id: str
    name: str
    kind: str
    destination: str  # the URL, or host:port
    fingerprint: str | None  # of the webhook's HMAC key
    cursor_seq: int  # the last audit record delivered (seq)
    delivered: int
    failures: int  # consecutive failed attempts
    next_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True)
class NewSink:
    view: SinkView
    secret: str | None  # the webhook's HMAC key, shown once


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.match(host))


def check_config(kind: str, url: str | None, host: str | None,
                 port: int | None) -> dict[str, Any]:
    """The sink's destination as stored, or InvalidInput naming each bad field."""
    issues: list[Issue] = []
    if kind not in KINDS:
        raise InvalidInput("invalid audit sink", [Issue("$.kind", f"one of {', '.join(KINDS)}")])
    if kind == "webhook":
        if host is not None or port is not None:
            issues.append(Issue("$.host", "a webhook sink takes `url`, not host and port"))
        parts = urlsplit(url or "")
        if not url:
            issues.append(Issue("$.url", "required for a webhook sink"))
        elif len(url) > 2000:
            issues.append(Issue("$.url", "at most 2000 characters"))
        elif parts.scheme != "https" or not parts.hostname:
            issues.append(Issue("$.url", "must be an https:// URL with a host"))
        elif parts.username or parts.password:
            issues.append(Issue("$.url", "must not carry a user or password (the sink signs "
                                         "its requests with its own key)"))
        if issues:
            raise InvalidInput("invalid audit sink", issues)
        return {"url": url}
    if url is not None:
        issues.append(Issue("$.url", "a syslog sink takes `host` and `port`, not a URL"))
    if not host:
        issues.append(Issue("$.host", "required for a syslog sink"))
    elif not _valid_host(host):
        issues.append(Issue("$.host", "must be a host name or an IP address"))
    port = SYSLOG_TLS_PORT if port is None else port
    if not 1 <= port <= 65535:
        issues.append(Issue("$.port", "must be 1 to 65535"))
    if issues:
        raise InvalidInput("invalid audit sink", issues)
    return {"host": host, "port": port}


def destination(kind: str, config: dict[str, Any]) -> str:
    """The destination as shown: a webhook's scheme and host only (collectors often carry
    their credential in the path or query, so the whole URL is sealed and never shown)."""
    if kind == "webhook":
        parts = urlsplit(str(config["url"]))
        return f"{parts.scheme}://{parts.netloc}/…"
    return f"{config['host']}:{config['port']}"


def open_config(cell: Cell, row: Any) -> dict[str, Any]:
    """The sink's destination (sealed at rest: a collector URL may hold a credential)."""
    config: dict[str, Any] = open_(cell.vault, row.account_id, "audit_sinks", row.id,
                                   "config", row.config)
    return config


def _view(cell: Cell, row: Any) -> SinkView:
    config = open_config(cell, row)
    return SinkView(
        id=row.id, name=row.name, kind=row.kind, destination=destination(row.kind, config),
        fingerprint=row.fingerprint, cursor_seq=row.cursor_seq, delivered=row.delivered,
        failures=row.failures, next_attempt_at=row.next_attempt_at,
        last_success_at=row.last_success_at, last_error=row.last_error,
        created_at=row.created_at)


def create(cell: Cell, clock: Clock, caller: Caller, *, name: str, kind: str,
           url: str | None = None, host: str | None = None, port: int | None = None,
           from_start: bool = True, max_sinks: int = 5) -> NewSink:
    """A new sink. `from_start`: deliver the account's whole trail (else only records
    appended from now on)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("invalid audit sink", [Issue("$.name", "must be 1 to 200 characters")])
    config = check_config(kind, url, host, port)
    sink_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32) if kind == "webhook" else None
    fingerprint = (None if secret is None
                   else "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16])
    now = clock.now()
    with cell.write() as conn:
        count = conn.execute(select(func.count()).select_from(audit_sinks)
                             .where(audit_sinks.c.account_id == caller.account_id)).scalar_one()
        if count >= max_sinks:
            raise LimitExceeded("siem.max_sinks_per_account", max_sinks,
                                f"the account already has {count} audit sinks")
        if _by_name(conn, caller.account_id, name):
            raise InvalidInput("invalid audit sink",
                               [Issue("$.name", "the account already has a sink of that name")])
        cursor = 0 if from_start else head(conn)[0]
        conn.execute(insert(audit_sinks).values(
            id=sink_id, account_id=caller.account_id, name=name, kind=kind,
            config=seal(cell.vault, caller.account_id, "audit_sinks", sink_id, "config", config),
            secret=None if secret is None else seal(cell.vault, caller.account_id,
                                                    "audit_sinks", sink_id, "secret", secret),
            fingerprint=fingerprint, cursor_seq=cursor, delivered=0, failures=0,
            created_by=caller.actor.id[:64], created_at=now))
        by_caller(cell, conn, caller, Action.AUDIT_SINK_CREATED, f"audit_sink:{sink_id}", now,
                  kind=kind, from_start=from_start)
        row = conn.execute(select(audit_sinks).where(audit_sinks.c.id == sink_id)).one()
    return NewSink(view=_view(cell, row), secret=secret)


def _by_name(conn: Connection, account_id: str, name: str) -> bool:
    return conn.execute(select(audit_sinks.c.id).where(
        audit_sinks.c.account_id == account_id, audit_sinks.c.name == name)).first() is not None


def list_sinks(cell: Cell, caller: Caller) -> list[SinkView]:
    with cell.read() as conn:
        rows = conn.execute(select(audit_sinks)
                            .where(audit_sinks.c.account_id == caller.account_id)
                            .order_by(audit_sinks.c.created_at, audit_sinks.c.id)).all()
    return [_view(cell, r) for r in rows]


def get(cell: Cell, caller: Caller, sink_id: str) -> SinkView:
    with cell.read() as conn:
        row = conn.execute(select(audit_sinks).where(
            audit_sinks.c.id == sink_id, audit_sinks.c.account_id == caller.account_id)).first()
    if row is None:
        raise NotFound(f"audit sink {sink_id} not found")
    return _view(cell, row)


def delete_sink(cell: Cell, clock: Clock, caller: Caller, sink_id: str) -> None:
    now = clock.now()
    with cell.write() as conn:
        gone = conn.execute(delete(audit_sinks).where(
            audit_sinks.c.id == sink_id, audit_sinks.c.account_id == caller.account_id)).rowcount
        if gone != 1:
            raise NotFound(f"audit sink {sink_id} not found")
        by_caller(cell, conn, caller, Action.AUDIT_SINK_DELETED, f"audit_sink:{sink_id}", now)
