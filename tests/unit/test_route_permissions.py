"""Every route declares the permission it needs, or why it needs none (SPEC I1): the real
application's routes are walked, and the walker is shown to catch a route that forgets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.routing import Mount, Route

from sealflow.api.app import create_app
from sealflow.api.deps import CallerDep
from sealflow.api.permissions import (
    PERMISSION_ATTR,
    declarations,
    public,
    public_endpoint,
    requires,
    undeclared,
)
from sealflow.bootstrap import build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.identity.permissions import Forbidden, Permission
from sealflow.services.accounts import Caller


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()})
    platform = build_platform(settings)
    yield create_app(platform, run_workers=False)
    platform.cells.dispose()


def _names(app: FastAPI) -> set[str]:
    return {f"{'|'.join(d.methods)} {d.path}" for d in undeclared(app)}


def test_every_route_of_the_application_declares_exactly_one(app: FastAPI) -> None:
    found = declarations(app)
    assert len(found) >= 30  # the walker sees the routes of the included routers
    assert [str(d) for d in found if not d.ok] == []
    # The routes with their own check are public, each saying why (the full written table of
    # what each route declares: tests/integration/test_authorization_matrix.py).
    public_paths = {d.path for d in found if d.public}
    assert public_paths >= {"/hooks/{region}/{token}", "/openapi.json", "/v1/accounts",
                            "/oauth/callback", "/healthz", "/readyz"}
    assert {d.path for d in found if d.permission} >= {"/v1/account", "/v1/workflows",
                                                       "/v1/executions", "/v1/authentications"}


def test_a_route_without_a_declaration_is_reported(app: FastAPI) -> None:
    @app.get("/v1/forgetful")
    def forgetful(who: CallerDep) -> dict[str, str]:
        return {"account": who.account_id}

    assert _names(app) == {"GET /v1/forgetful"}


def test_a_route_with_two_declarations_is_reported(app: FastAPI) -> None:
    @app.post("/v1/greedy", dependencies=[Depends(requires(Permission.WORKFLOWS_RUN))])
    def greedy(who: Annotated[Caller, Depends(requires(Permission.WORKFLOWS_READ))]) -> None:
        return None

    @app.get("/v1/both", dependencies=[Depends(public("no reason really"))])
    def both(who: Annotated[Caller, Depends(requires(Permission.WORKFLOWS_READ))]) -> None:
        return None

    assert _names(app) == {"POST /v1/greedy", "GET /v1/both"}
    assert "2 declarations" in str(next(d for d in undeclared(app) if d.path == "/v1/greedy"))


def test_routes_of_an_included_router_and_plain_routes_are_walked(app: FastAPI) -> None:
    inner = APIRouter(prefix="/inner")

    @inner.get("/forgot")
    def forgot() -> None:
        return None

    @inner.get("/declared")
    def declared(who: Annotated[Caller, Depends(requires(Permission.AUDIT_READ))]) -> None:
        return None

    outer = APIRouter(prefix="/v1/outer")
    outer.include_router(inner)
    app.include_router(outer)
    # A router-level declaration covers each of its routes.
    guarded = APIRouter(prefix="/v1/guarded",
                        dependencies=[Depends(requires(Permission.KEYS_MANAGE))])

    @guarded.post("/rotate")
    def rotate() -> None:
        return None

    app.include_router(guarded)

    async def plain(request: object) -> None:
        return None

    app.router.routes.append(Route("/plain", plain))
    app.router.routes.append(Route("/plain-public", public_endpoint("a probe")(plain_ok)))
    app.router.routes.append(Mount("/static", app=FastAPI()))  # unknown kinds fail closed

    assert _names(app) == {"GET /v1/outer/inner/forgot", "GET|HEAD /plain", " /static"}
    found = {d.path: d for d in declarations(app)}
    assert found["/v1/outer/inner/declared"].permission is Permission.AUDIT_READ
    assert found["/v1/guarded/rotate"].permission is Permission.KEYS_MANAGE
    assert found["/plain-public"].public == "a probe"


async def plain_ok(request: object) -> None:
    return None


def test_requires_checks_the_callers_role() -> None:
    check = requires(Permission.WORKFLOWS_WRITE)
    assert requires(Permission.WORKFLOWS_WRITE) is check  # one per permission
    assert getattr(check, PERMISSION_ATTR) is Permission.WORKFLOWS_WRITE
    builder = Caller("us", "a", "t", role="builder")
    assert check(builder) is builder
    assert check(Caller("us", "a", "t")) is not None  # interim tokens act as the owner
    with pytest.raises(Forbidden) as raised:
        check(Caller("us", "a", "t", role="operator"))
    assert raised.value.permission is Permission.WORKFLOWS_WRITE
    with pytest.raises(Forbidden):  # a role this version does not know holds nothing
        check(Caller("us", "a", "t", role="superuser"))


def test_public_needs_a_reason() -> None:
    assert public("liveness probe")() is None
    with pytest.raises(ValueError, match="must say why"):
        public("  ")
