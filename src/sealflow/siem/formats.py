"""The bytes a SIEM receives (pure: no I/O).

Syslog over TLS (RFC 5425): each message is framed by octet counting, `MSG-LEN SP
SYSLOG-MSG`, where the message is RFC 5424:

    <110>1 2026-11-29T16:00:00.000000Z sealflow sealflow - login.failed [sealflow@32473
    seq="42" region="us"] BOM{"account_id":...canonical record...}

PRI 110 = facility 13 (log audit) * 8 + severity 6 (informational). MSGID is the record's
action; the structured data repeats its seq and region so a receiver can order and dedupe
without parsing the body; MSG is the record's canonical JSON (RFC 8785, exactly the bytes the
chain hashes, so a receiver can verify it), UTF-8 with the BOM RFC 5424 asks for. 32473 is
the private enterprise number RFC 5612 reserves for documentation: operators who need their
own SD-ID change `SD_ID`.

Webhook: a POST of JSON lines (one canonical record per line), signed like sealflow's other
webhooks: `X-Sealflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." +
body)>`. The time is inside the signature so a captured request cannot be replayed later
than the receiver's tolerance."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PRI = 13 * 8 + 6
SD_ID = "sealflow@32473"
APP_NAME = "sealflow"
SIGNATURE_HEADER = "X-Sealflow-Signature"
BOM = "\ufeff"


@dataclass(frozen=True)
class Record:
    """One audit record as stored: its seq, action, time (RFC 3339 UTC) and canonical JSON."""

    seq: int
    region: str
    action: str
    at: str
    body: str


def _printable(value: str, limit: int) -> str:
    """RFC 5424 header fields are printable US-ASCII without spaces, or NILVALUE."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(record: Record, hostname: str = APP_NAME) -> bytes:
    """The RFC 5424 message of one record."""
    header = (f"<{PRI}>1 {record.at} {_printable(hostname, 255)} {APP_NAME} - "
              f"{_printable(record.action, 32)}")
    sd = f'[{SD_ID} seq="{record.seq}" region="{_sd_value(record.region)}"]'
    return f"{header} {sd} {BOM}{record.body}".encode()


def octet_frame(message: bytes) -> bytes:
    """RFC 5425 section 4.3: octet-counting framing."""
    return str(len(message)).encode("ascii") + b" " + message


def syslog_frames(records: Iterable[Record], hostname: str = APP_NAME) -> bytes:
    return b"".join(octet_frame(syslog_message(r, hostname)) for r in records)


def parse_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Split octet-counted frames (for tests and receivers); returns (messages, rest)."""
    messages: list[bytes] = []
    while True:
        space = data.find(b" ")
        if space <= 0 or not data[:space].isdigit():
            return messages, data
        length = int(data[:space])
        end = space + 1 + length
        if len(data) < end:
            return messages, data
        messages.append(data[space + 1:end])
        data = data[end:]


def json_lines(records: Sequence[Record]) -> bytes:
    return b"".join(r.body.encode() + b"\n" for r in records)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: bytes, header: str, body: bytes) -> bool:
    """True when `header` is a valid signature of `body` (the time is not judged here)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)
