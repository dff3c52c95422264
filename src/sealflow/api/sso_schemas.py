"""Request and response bodies of single sign-on (OpenID Connect, SPEC I4)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from sealflow.api.schemas import _In


class SsoIn(_In):
    issuer: str = Field(min_length=1, max_length=2048,
                        description="The provider's issuer (https); its discovery document "
                                    "must answer")
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: str = Field(min_length=1, max_length=4096, description="Kept sealed; "
                               "never shown again")
    default_role: Literal["admin", "builder", "operator", "viewer"] = Field(
        "viewer", description="The role of a member made just in time at their first login")
    required: bool = Field(False, description="Refuse the members' passwords: SSO only")


class SsoOut(BaseModel):
    issuer: str
    client_id: str
    default_role: str
    required: bool
    start_url: str = Field(description="Where members begin an SSO login")
    created_at: datetime
    updated_at: datetime
