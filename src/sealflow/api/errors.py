"""One error shape for every API failure: {"error": {code, message, retryable, ...}}.
Errors a user can cause are 4xx naming the field or limit at fault; anything else is a 500
with no detail (and a log line), never a traceback."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from sealflow.api.responses import JSONBytes
from sealflow.audit.trail import AuditUnavailable
from sealflow.core.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    SealflowError,
)
from sealflow.db.sealed import DataDestroyed, DataUnreadable
from sealflow.identity.permissions import Forbidden
from sealflow.redaction import scope
from sealflow.services.accounts import Unauthenticated
from sealflow.services.webhooks import BadSignature

log = logging.getLogger("sealflow.api")

_STATUS: list[tuple[type[SealflowError], int]] = [
    (Unauthenticated, 401),
    (BadSignature, 401),
    (Forbidden, 403),  # a role without the permission (identity.permissions)
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (LimitExceeded, 422),
    (DataDestroyed, 410),  # the account's keys were shredded (S7)
    (DataUnreadable, 409),  # stored data that does not decrypt where it is (S6)
    (AuditUnavailable, 503),  # no audit record, no action (A2)
]


class ApiError(SealflowError):
    """An error with an explicit HTTP status (payload too large, rate limited, ...)."""

    def __init__(self, status: int, message: str, *, code: str, retryable: bool = False,
                 headers: dict[str, str] | None = None, extra: dict[str, object] | None = None):
        super().__init__(message, code=code, retryable=retryable)
        self.status = status
        self.headers = headers or {}
        self.extra = extra or {}

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), **self.extra}


def error_response(status: int, body: dict[str, object],
                   headers: dict[str, str] | None = None) -> JSONBytes:
    """Every error answer of the API, redacted (S5): a message that quotes a value (a
    token format, a card number, a secret of the run in scope) never carries it out."""
    return JSONBytes({"error": scope.current().value(body)}, status_code=status,
                     headers=headers)


def _loc_to_path(loc: tuple[object, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods /openapi.json documents for the resource at `path`, across every route of
    that path (the router's own 405 names only the first route that matched). A literal path
    (/v1/workflows/validate) is its own resource, not an instance of /v1/workflows/{id}."""
    index: dict[str, tuple[re.Pattern[str], set[str]]] | None = getattr(
        app.state, "allow_index", None
    )
    if index is None:
        index = {
            template: (compile_path(template)[0],
                       {m.upper() for m in operations if m in _METHODS})
            for template, operations in app.openapi().get("paths", {}).items()
        }
        app.state.allow_index = index
    if path in index:
        return sorted(index[path][1])
    return sorted({m for regex, methods in index.values() if regex.match(path) for m in methods})


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONBytes:
        return error_response(exc.status, exc.as_dict(), exc.headers)

    @app.exception_handler(SealflowError)
    async def _sealflow_error(_: Request, exc: SealflowError) -> JSONBytes:
        for kind, status in _STATUS:
            if isinstance(exc, kind):
                return error_response(status, exc.as_dict())
        return error_response(400, exc.as_dict())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONBytes:
        issues = [
            {"path": _loc_to_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        return error_response(
            422,
            {"code": "invalid", "message": "the request is invalid", "retryable": False,
             "issues": issues},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONBytes:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(app, request.scope["path"])
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return error_response(
            exc.status_code,
            {"code": f"http_{exc.status_code}", "message": str(exc.detail), "retryable": False},
            headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONBytes:
        # The route's template, not the path: webhook paths carry their secret token.
        route = getattr(request.scope.get("route"), "path", None) or "(no route)"
        log.error("unhandled error on %s %s: %s", request.method, route, type(exc).__name__)
        return error_response(
            500, {"code": "internal", "message": "internal error; it has been logged",
                  "retryable": True},
        )
