from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sealflow.api.security import DEFAULT_CSP, HSTS_VALUE, SecurityHeadersMiddleware

EXPECTED = {
    "strict-transport-security": HSTS_VALUE,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": DEFAULT_CSP,
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cache-control": "no-store",
}


class _Client:
    """Synchronous facade over httpx's in-process ASGI transport (no network, no TestClient)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
                return await c.get(path)

        return asyncio.run(go())


def _client(**options: Any) -> _Client:
    async def plain(request: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def custom(request: object) -> PlainTextResponse:
        return PlainTextResponse(
            "hi",
            headers={
                "Cache-Control": "public, max-age=60",
                "X-Frame-Options": "SAMEORIGIN",
                "Strict-Transport-Security": "max-age=0",
            },
        )

    app = Starlette(
        routes=[Route("/", plain), Route("/custom", custom)],
        middleware=[Middleware(SecurityHeadersMiddleware, **options)],
    )
    return _Client(app)


def test_all_headers_on_every_response() -> None:
    client = _client()
    for path in ("/", "/missing"):  # a 404 from the router gets them too
        response = client.get(path)
        for name, value in EXPECTED.items():
            assert response.headers.get_list(name) == [value], name


def test_app_headers_kept_but_hsts_enforced() -> None:
    response = _client().get("/custom")
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers.get_list("strict-transport-security") == [HSTS_VALUE]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_hsts_off_leaves_app_value() -> None:
    client = _client(hsts=False)
    assert "strict-transport-security" not in client.get("/").headers
    custom = client.get("/custom").headers.get_list("strict-transport-security")
    assert custom == ["max-age=0"]


def test_custom_and_disabled_csp() -> None:
    csp = "default-src 'self'"
    assert _client(csp=csp).get("/").headers["content-security-policy"] == csp
    assert "content-security-policy" not in _client(csp=None).get("/").headers


@pytest.mark.parametrize(
    "options",
    [{"csp": "a\r\nX-Injected: 1"}, {"csp": " "}, {"csp": 3}, {"hsts": "yes"}],
)
def test_bad_options_refused_at_construction(options: dict[str, Any]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    with pytest.raises((TypeError, ValueError)):
        SecurityHeadersMiddleware(app, **options)


def test_non_http_scopes_untouched_and_mixed_case_names() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"X-Frame-Options", b"SAMEORIGIN")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    middleware = SecurityHeadersMiddleware(app)
    asyncio.run(middleware({"type": "http"}, receive, send))
    names = [name.lower() for name, _ in sent[0]["headers"]]
    assert names.count(b"x-frame-options") == 1
    assert sent[1] == {"type": "http.response.body", "body": b""}

    sent.clear()
    asyncio.run(middleware({"type": "lifespan"}, receive, send))
    assert "headers" in sent[0] and sent[0]["headers"] == [(b"X-Frame-Options", b"SAMEORIGIN")]
