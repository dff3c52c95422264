"""API tokens (I5): make one (shown once), list, revoke."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends

from sealflow.api.deps import PlatformDep
from sealflow.api.identity_schemas import errors
from sealflow.api.permissions import requires
from sealflow.api.token_schemas import NewTokenOut, TokenIn, TokenOut
from sealflow.identity.permissions import Permission
from sealflow.services import tokens
from sealflow.services.accounts import Caller

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=errors(401, 403, 429))
# Every member manages their own tokens; tokens.manage (admins) widens list and revoke to the
# whole account (services.tokens).
Own = Annotated[Caller, Depends(requires(Permission.TOKENS_OWN))]


@router.post("", status_code=201, response_model=NewTokenOut, responses=errors(400, 422))
def create(body: TokenIn, who: Own, p: PlatformDep) -> NewTokenOut:
    """Makes a token acting with your role, narrowed to `scopes` (each one you hold), expiring
    after `expires_in_days` (default 90, at most 365). Answers the token once."""
    made = tokens.create(p.cells, p.clock, who, name=body.name, scopes=body.scopes,
                         expires_in_days=body.expires_in_days)
    return NewTokenOut(**asdict(made.view), token=made.token)


@router.get("", response_model=list[TokenOut])
def list_tokens(who: Own, p: PlatformDep) -> list[TokenOut]:
    """Your tokens (every token of the account with tokens.manage), revoked and expired ones
    included; never the token itself."""
    return [TokenOut(**asdict(v)) for v in tokens.list_tokens(p.cells, who)]


@router.delete("/{token_id}", status_code=204, responses=errors(404))
def revoke(token_id: str, who: Own, p: PlatformDep) -> None:
    """Revokes a token at once (yours; any of the account's with tokens.manage)."""
    tokens.revoke(p.cells, p.clock, who, token_id)
