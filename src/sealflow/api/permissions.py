"""What each route needs (SPEC I1): every route of the API declares exactly one permission,
`requires(Permission.X)`, or says why it needs none, `public("reason")`. The check itself is
`identity.permissions.authorize()` (the one place that decides); this module only wires it
into FastAPI and lets a test (and anyone reading /v1 routes) find each declaration.

The check runs as a dependency, before the route's code: a role without the permission gets
403 `forbidden` whatever ids the request names (it learns nothing about them); a role with
it reaching another account's ids gets the service's 404, never data.

    WorkflowsRead = Annotated[Caller, Depends(requires(Permission.WORKFLOWS_READ))]

    @router.get("/{workflow_id}")
    def read(workflow_id: str, who: WorkflowsRead) -> ...

    @router.get("/healthz", dependencies=[Depends(public("liveness probe"))])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import Route

from sealflow.api.deps import caller
from sealflow.identity.permissions import Permission, authorize
from sealflow.services.accounts import Caller

PERMISSION_ATTR = "__sealflow_permission__"
PUBLIC_ATTR = "__sealflow_public__"

_checks: dict[Permission, Callable[[Caller], Caller]] = {}


def requires(permission: Permission) -> Callable[[Caller], Caller]:
    """A dependency answering the authenticated Caller if its role (and, for an API token,
    its scopes) holds `permission`, else raising Forbidden (403). One function per
    permission, so FastAPI resolves it once per request and `app.dependency_overrides` can
    name it."""
    if permission not in _checks:
        _checks[permission] = _check(permission)
    return _checks[permission]


def _check(permission: Permission) -> Callable[[Caller], Caller]:
    def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        # The role as stored, not Role(...): authorize() fails closed on a role this version
        # does not know (403), where Role() would raise (a 500). An API token's scopes narrow
        # it further (403 naming the missing scope).
        authorize(who.role, permission, who.scopes)
        return who

    check.__name__ = check.__qualname__ = f"requires_{permission.name.lower()}"
    setattr(check, PERMISSION_ATTR, permission)
    return check


def public(reason: str) -> Callable[[], None]:
    """A dependency that checks nothing: for routes with their own check (the operator token,
    a webhook's token and signature, an OAuth state) or none (probes). `reason` says which."""
    if not reason.strip():
        raise ValueError("a public route must say why it needs no permission")

    def no_permission() -> None:
        return None

    setattr(no_permission, PUBLIC_ATTR, reason)
    return no_permission


def public_endpoint(reason: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The `public` marker for a plain Starlette route's endpoint, which has no dependencies."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        setattr(endpoint, PUBLIC_ATTR, reason)
        return endpoint

    return mark


@dataclass(frozen=True)
class Declaration:
    """What one route declares: `permission`, or `public` (the reason), or neither (None,
    None: a route missing its declaration) - `count` says how many it declares."""

    methods: tuple[str, ...]
    path: str
    permission: Permission | None
    public: str | None
    count: int

    @property
    def ok(self) -> bool:
        return self.count == 1

    def __str__(self) -> str:
        what = (self.permission.value if self.permission else
                f"public ({self.public})" if self.public else "nothing")
        if self.count > 1:
            what = f"{self.count} declarations"
        return f"{'|'.join(self.methods)} {self.path}: {what}"


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependency_calls(sub)


def _markers(calls: Iterable[Any]) -> tuple[list[Permission], list[str]]:
    distinct = {id(c): c for c in calls if c is not None}.values()
    permissions = [getattr(c, PERMISSION_ATTR) for c in distinct if hasattr(c, PERMISSION_ATTR)]
    reasons = [getattr(c, PUBLIC_ATTR) for c in distinct if hasattr(c, PUBLIC_ATTR)]
    return permissions, reasons


def declaration(app: FastAPI, route: RouteContext) -> Declaration:
    """What `route` declares (a RouteContext: an application route as served, with the
    dependencies and prefix of the routers it was included through). The one route FastAPI
    adds itself, the OpenAPI document, is public (it describes the API, holds no account's
    data). Any other kind of route (a mount, a websocket) declares nothing until this
    function learns it: fails closed."""
    path = route.path or repr(route.original_route)
    methods = tuple(sorted(route.methods or ()))
    original = route.original_route
    if isinstance(original, APIRoute):
        permissions, reasons = _markers(_dependency_calls(route.dependant))
    elif isinstance(original, Route):
        reason = getattr(original.endpoint, PUBLIC_ATTR, None)
        if reason is None and app.openapi_url is not None and path == app.openapi_url:
            reason = "the API's own description, no account's data"
        permissions, reasons = [], [reason] if reason else []
    else:
        permissions, reasons = [], []
    return Declaration(
        methods=methods, path=path,
        permission=permissions[0] if permissions else None,
        public=reasons[0] if reasons else None,
        count=len(permissions) + len(reasons),
    )


def declarations(app: FastAPI) -> list[Declaration]:
    """Every route of `app` as served (routers included, prefixes applied), in order."""
    return [declaration(app, route) for route in iter_route_contexts(app.routes)]


def undeclared(app: FastAPI) -> list[Declaration]:
    """Routes that declare no permission, or more than one: should always be empty."""
    return [d for d in declarations(app) if not d.ok]
