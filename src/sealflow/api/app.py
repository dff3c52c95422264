"""The ASGI application: routes, error handling, security headers. Built from a Platform
(bootstrap.py); the lifespan starts and drains the embedded workers."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp

from sealflow.api import errors
from sealflow.api.access_log import AccessLogMiddleware, Pseudonymiser, load_or_create_key
from sealflow.api.deps import RateLimiter
from sealflow.api.routes import (
    accounts,
    audit,
    audit_sinks,
    auth,
    authentications,
    executions,
    health,
    me,
    members,
    oauth,
    sso,
    staff,
    tokens,
    webhooks,
    workflows,
)
from sealflow.api.routes import subject_requests as subject_requests_routes
from sealflow.api.security import SecurityHeadersMiddleware
from sealflow.bootstrap import Platform


def create_app(
    platform: Platform, *, operator_token: str | None = None, run_workers: bool = True
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start(workers=run_workers)
        # Everything built at start-up (app, routes, schemas, SQLAlchemy metadata) lives as
        # long as the process: keep it out of the cyclic GC, whose full collections would
        # otherwise walk it all and stall the event loop (the latency tail).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await platform.stop()

    app = FastAPI(
        title="sealflow",
        version="0.1.0",
        description="Workflow automation whose data-protection promises are enforced by code.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.rate_limiter = RateLimiter(platform.limits.api_rate_per_s, platform.limits.api_burst)
    app.state.operator_token_hash = (
        hashlib.sha256(operator_token.encode()).hexdigest() if operator_token else None
    )
    errors.install(app)
    for module in (accounts, workflows, authentications, oauth, executions, webhooks, health,
                   auth, me, members, tokens):
        app.include_router(module.router)
    app.include_router(sso.router)
    app.include_router(subject_requests_routes.router)
    app.include_router(audit.router)
    app.include_router(audit_sinks.router)
    app.include_router(staff.staff_router)
    app.include_router(staff.account_router)
    app.router.routes.insert(
        0, Route("/hooks/{region}/{token}", webhooks.receive_route, methods=["POST"]))
    return app


def asgi_app(app: FastAPI) -> ASGIApp:
    """What the server runs: the app inside the security-header middleware, inside the
    access log. Outside, not through add_middleware: Starlette's error middleware is always
    outermost and answers a 500 itself, so headers added inside it would be missing from
    exactly that answer (and the log would miss its status)."""
    settings = app.state.platform.settings
    pseudonymise = Pseudonymiser(load_or_create_key(settings.access_log_key_file()))
    return AccessLogMiddleware(SecurityHeadersMiddleware(app), pseudonymise)
