"""The server access log (S5, D7): one JSON line per request, written through the logging
set-up (so the redaction processor sees it too), carrying nothing secret or personal:

- the path with webhook tokens replaced (`/hooks/us/[REDACTED]`): the token is the secret of
  an anonymous webhook;
- no query string values, only the parameter names (an api_key authentication may sit there,
  an OAuth callback carries a code and a state);
- the client address pseudonymised with a keyed hash (HMAC-SHA256 under a key kept in the
  data directory, mode 0600): the same client gives the same pseudonym, so abuse can still be
  followed, but the address itself is not stored, and without the key it cannot be tried
  against the 2**32 possible IPv4 addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import parse_qsl

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sealflow.secret_files import load_or_create_secret

log = structlog.get_logger("sealflow.access")

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    """The pseudonymisation key, created (0600) on first use."""
    return load_or_create_secret(path, KEY_BYTES)


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes")
        self._key = key

    def __call__(self, address: str) -> str:
        digest = hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()
        return "ip_" + digest[:16]


def shown_path(path: str) -> str:
    """The request path as logged: webhook tokens replaced."""
    if path.startswith("/hooks/"):
        parts = path.split("/", 3)  # "", "hooks", region, token...
        region = parts[2] if len(parts) > 2 else ""
        return f"/hooks/{region[:16]}/[REDACTED]"
    return path[:300]


def query_names(query_string: bytes) -> list[str]:
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return ["(unparsable)"]
    return sorted({name[:50] for name, _ in pairs})[:20]


class AccessLogMiddleware:
    """Outermost ASGI middleware: measures and logs every HTTP request once."""

    def __init__(self, app: ASGIApp, pseudonymise: Pseudonymiser) -> None:
        self.app = app
        self.pseudonymise = pseudonymise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0

        async def measured(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, measured)
        finally:
            client = scope.get("client")
            log.info(
                "request",
                method=scope.get("method"),
                path=shown_path(scope.get("path", "")),
                query=query_names(scope.get("query_string", b"")),
                status=status or 500,
                bytes=sent,
                ms=round((time.perf_counter() - started) * 1000, 2),
                client=self.pseudonymise(client[0]) if client else None,
            )
