"""Request and response bodies of the API tokens' routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from sealflow.api.schemas import _In
from sealflow.identity.permissions import Permission
from sealflow.services.accounts import MAX_EXPIRY_DAYS
from sealflow.services.tokens import DEFAULT_EXPIRY_DAYS

_NAMES = ", ".join(p.value for p in Permission)


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    scopes: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=len(Permission),
        description=f"Permission names, each one you hold ({_NAMES}); leave out for all of "
                    "yours. The token never does more than your role allows at the time")
    expires_in_days: int = Field(DEFAULT_EXPIRY_DAYS, ge=1, le=MAX_EXPIRY_DAYS)


class TokenOut(BaseModel):
    id: str
    name: str
    role: str = Field(description="The role it was made with; it acts with the lower of this "
                                  "and its maker's role now")
    scopes: list[str] | None = Field(description="None: every permission of the role")
    user_id: str | None = Field(description="The member who made it; None: the operator")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    revoked_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="The token (sf_<region>_...): shown once, only its SHA-256 "
                                   "is kept")
