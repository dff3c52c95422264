"""Request and response bodies of the audit sinks' routes (SIEM streaming)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from sealflow.api.schemas import _In


class SinkIn(_In):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    kind: Literal["syslog", "webhook"] = Field(
        description="syslog: RFC 5424 messages over TLS (RFC 5425, octet counting); webhook: "
                    "signed HTTPS POSTs of JSON lines")
    url: str | None = Field(None, max_length=2000, description="webhook: the https:// URL")
    host: str | None = Field(None, max_length=253, description="syslog: the receiver's host")
    port: int | None = Field(None, ge=1, le=65535, description="syslog: default 6514")
    from_start: bool = Field(True, description="Deliver the account's whole trail first "
                                               "(false: only records from now on)")


class SinkOut(BaseModel):
    id: str
    name: str
    kind: str
    destination: str
    fingerprint: str | None = Field(description="Of the webhook's signing key (never the key)")
    cursor_seq: int = Field(description="The seq of the last audit record delivered")
    delivered: int
    failures: int = Field(description="Failed attempts in a row (0: healthy)")
    next_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    created_at: datetime


class NewSinkOut(SinkOut):
    secret: str | None = Field(
        description="webhook: the HMAC-SHA256 key of the X-Sealflow-Signature header "
                    "(t=<unix time>,v1=<hex HMAC of '<t>.' + body>); shown once, only sealed "
                    "and its fingerprint are kept")


class SinkTestOut(BaseModel):
    ok: bool
    code: str | None = None
    reason: str | None = None
