"""Security headers (SPEC T1): the one place that sets them (DESIGN house rule 4).

A pure ASGI middleware in the style of Starlette's cors.py: options are checked and the
header block is encoded once in __init__, so a response costs one pass over its headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"
# Two years: Mozilla's recommendation and the HSTS preload list's minimum is one.
HSTS_VALUE = "max-age=63072000; includeSubDomains"
_HSTS = b"strict-transport-security"

_BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    # Responses carry account data: nothing may be kept by browsers or shared caches unless
    # a route says otherwise (it sets its own Cache-Control, which we leave alone).
    ("Cache-Control", "no-store"),
)


def _encode(name: str, value: str) -> tuple[bytes, bytes]:
    if any(c in value for c in "\r\n\0") or not value.strip():
        raise ValueError(f"invalid value for header {name}: {value!r}")
    return name.lower().encode("latin-1"), value.encode("latin-1")


class SecurityHeadersMiddleware:
    """Add HSTS and strict security headers to every HTTP response.

    A header the app already set is kept as is, except Strict-Transport-Security: with
    `hsts=True` the platform's policy always wins, so a route cannot weaken or drop it.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = True, csp: str | None = DEFAULT_CSP) -> None:
        if not isinstance(hsts, bool):
            raise TypeError("hsts must be a bool")
        if csp is not None and not isinstance(csp, str):
            raise TypeError("csp must be a str or None")
        self.app = app
        self.hsts = hsts
        defaults = list(_BASE_HEADERS)
        if csp is not None:
            defaults.append(("Content-Security-Policy", csp))
        self._defaults = tuple(_encode(n, v) for n, v in defaults)
        self._hsts_header = _encode("Strict-Transport-Security", HSTS_VALUE) if hsts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = self._with_headers(message)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _with_headers(self, message: Message) -> Message:
        headers: list[tuple[bytes, bytes]] = []
        present: set[bytes] = set()
        for name, value in message.get("headers", ()):
            lowered = bytes(name).lower()
            if lowered == _HSTS and self._hsts_header is not None:
                continue  # replaced by ours below
            present.add(lowered)
            headers.append((name, value))
        headers.extend(h for h in self._defaults if h[0] not in present)
        if self._hsts_header is not None:
            headers.append(self._hsts_header)
        return {**message, "headers": headers}
