"""Single sign-on with OpenID Connect (SPEC I4): the account's provider (owners only,
SSO_MANAGE: whoever configures it can sign in as any member) and the browser login, whose
start and callback carry no credentials (the single-use state is the check). Pages never
show the code or a token."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from sealflow.api.deps import PlatformDep, identity
from sealflow.api.identity_schemas import errors
from sealflow.api.permissions import public, requires
from sealflow.api.sso_schemas import SsoIn, SsoOut
from sealflow.bootstrap import Platform
from sealflow.identity.permissions import Permission
from sealflow.services import sessions, sso, sso_config
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity

router = APIRouter(tags=["sso"])
SsoManage = Annotated[Caller, Depends(requires(Permission.SSO_MANAGE))]
IdentityDep = Annotated[Identity, Depends(identity)]
Param = Annotated[str | None, Query(max_length=4096)]

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>sealflow: {title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>"""


def _page(status: int, text: str) -> HTMLResponse:
    body = _PAGE.format(title="Single sign-on failed", text=html.escape(text))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _redirect_uri(p: Platform) -> str:
    return p.settings.base_url() + sso.CALLBACK_PATH


def _out(config: sso_config.SsoConfig) -> SsoOut:
    return SsoOut(issuer=config.issuer, client_id=config.client_id,
                  default_role=config.default_role, required=config.required,
                  start_url=f"{sso.START_PATH}?account={config.account_id}",
                  created_at=config.created_at, updated_at=config.updated_at)


@router.put("/v1/account/sso", response_model=SsoOut,
            responses=errors(400, 401, 403, 422, 429))
async def put_sso(body: SsoIn, who: SsoManage, p: PlatformDep) -> SsoOut:
    """Sets the account's OpenID Connect provider (its discovery document must answer)."""
    return _out(await sso_config.put_config(
        p.cells, p.clock, p.outbound, who, issuer=body.issuer, client_id=body.client_id,
        client_secret=body.client_secret, default_role=body.default_role,
        required=body.required))


@router.get("/v1/account/sso", response_model=SsoOut, responses=errors(401, 403, 404, 429))
def get_sso(who: SsoManage, p: PlatformDep) -> SsoOut:
    """The account's provider (never its client secret)."""
    return _out(sso_config.get_config(p.cells, who))


@router.delete("/v1/account/sso", status_code=204, responses=errors(401, 403, 404, 429))
def delete_sso(who: SsoManage, p: PlatformDep) -> Response:
    """Turns single sign-on off (members keep their sessions; passwords work again)."""
    sso_config.delete_config(p.cells, p.clock, who)
    return Response(status_code=204)


@router.get("/v1/auth/sso/start", include_in_schema=False,
            dependencies=[Depends(public("the start of a browser login: no one is signed in"))])
async def start(p: PlatformDep, account: Param = None) -> Response:
    if not account:
        return _page(400, "Which account? Start at /v1/auth/sso/start?account=<account id>.")
    try:
        begun = await sso.start(p.cells, p.clock, p.outbound, account_id=account,
                                redirect_uri=_redirect_uri(p))
    except sso.SsoFailed as err:
        return _page(502 if err.retryable else 400, err.message)
    response = RedirectResponse(begun.url, status_code=302,
                                headers={"Cache-Control": "no-store"})
    # Lax: sent on the provider's top-level redirect back to the callback.
    response.set_cookie(sso.BROWSER_COOKIE, begun.browser, path="/", secure=True,
                        httponly=True, samesite="lax",
                        max_age=int(sso.STATE_TTL.total_seconds()))
    return response


@router.get("/v1/auth/sso/callback", include_in_schema=False,
            dependencies=[Depends(public("a browser redirect: the single-use state is the "
                                         "check"))])
async def callback(request: Request, p: PlatformDep, ident: IdentityDep, state: Param = None,
                   code: Param = None, error: Param = None) -> Response:
    if not state:
        return _page(400, "The request has no state; start the login again.")
    try:
        result = await sso.finish(p.cells, p.clock, p.outbound, ident, state=state, code=code,
                                  error=error, browser=request.cookies.get(sso.BROWSER_COOKIE),
                                  redirect_uri=_redirect_uri(p))
    except sso.SsoFailed as err:
        return _page(502 if err.retryable else 400, err.message)
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(sso.BROWSER_COOKIE, path="/", secure=True, httponly=True,
                           samesite="lax")
    response.set_cookie(
        sessions.COOKIE_NAME, result.session.token, path="/", secure=True, httponly=True,
        samesite="lax", max_age=int(ident.absolute_timeout.total_seconds()))
    return response
