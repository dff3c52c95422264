"""`GET /oauth/callback`: where the authorization server sends the user's browser back
(S1). No API token (a browser redirect carries none): the single-use state proves which
connect this is. The page says what happened and never shows the code or a token."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from sealflow.api.deps import PlatformDep
from sealflow.api.permissions import public
from sealflow.api.routes.authentications import redirect_uri
from sealflow.services import oauth_connect

router = APIRouter(tags=["oauth"])

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>sealflow: {title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>"""

Param = Annotated[str | None, Query(max_length=4096)]


def _page(status: int, title: str, text: str) -> HTMLResponse:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/oauth/callback", response_class=HTMLResponse, include_in_schema=False,
            dependencies=[Depends(public("a browser redirect: the single-use state is the check"))])
async def callback(p: PlatformDep, state: Param = None, code: Param = None,
                   error: Param = None) -> HTMLResponse:
    if not state:
        return _page(400, "Connect failed", "The request has no state; start the connect "
                                            "again from sealflow.")
    try:
        connected = await oauth_connect.finish(
            p.cells, p.clock, p.outbound, state=state, code=code, error=error,
            redirect_uri=redirect_uri(p))
    except oauth_connect.ConnectFailed as err:
        return _page(502 if err.retryable else 400, "Connect failed", err.message)
    return _page(200, "Connected", f"The authentication {connected.name!r} is connected. You "
                                   "can close this page.")
