"""OAuth 2.0 client side (SPEC S1). The public API is in `client`; see its docstring."""

from sealflow.oauth.client import (
    Authorization,
    OAuthClientConfig,
    OAuthError,
    TokenSet,
    client_credentials,
    exchange_code,
    new_authorization,
    refresh,
)

__all__ = [
    "Authorization",
    "OAuthClientConfig",
    "OAuthError",
    "TokenSet",
    "client_credentials",
    "exchange_code",
    "new_authorization",
    "refresh",
]
