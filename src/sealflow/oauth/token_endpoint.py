"""One POST to a token endpoint (RFC 6749 3.2), its answer turned into a TokenSet or an
OAuthError, and the retry loop around it.

The request goes through the caller's httpx client (in production the SSRF-guarded one), with
an explicit timeout and without following redirects: a token request carries a secret, and a
redirect would replay it to wherever the Location points.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from sealflow.clock import Clock
from sealflow.connectors.http import parse_retry_after
from sealflow.core.errors import ConnectorError
from sealflow.core.retry import RetryPolicy
from sealflow.oauth.errors import OAuthError, endpoint_name, error_code, scrub
from sealflow.oauth.tokens import TokenResponseError, TokenSet, parse_token_response

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A token response is a few kilobytes; this only stops a hostile server filling memory.
MAX_BODY_BYTES = 256 * 1024
# Retries are short: a refresh usually sits in front of a step that is waiting for it.
RETRY_INITIAL_S, RETRY_MAX_S = 0.5, 4.0
# A Retry-After longer than this is not waited for inside one call; the error says retryable
# and carries the value, so the step's own retry policy can wait instead.
MAX_RETRY_AFTER_S = 10.0


async def request_tokens(
    url: str,
    form: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    http: httpx.AsyncClient,
    clock: Clock,
    sent: Iterable[str],
) -> TokenSet:
    """POST `form` to the token endpoint once. `sent` lists the secret values in the request,
    scrubbed from anything the server echoes into an error."""
    shown, secrets = endpoint_name(url), tuple(sent)
    issued_at = clock.now()  # before sending: expires_at errs early, never late
    try:
        async with http.stream(
            "POST",
            url,
            data=dict(form),
            headers={"Accept": "application/json", **headers},
            timeout=TIMEOUT,
            follow_redirects=False,
        ) as response:
            raw = await _read(response, shown)
    except ConnectorError as exc:  # the SSRF guard's refusal, already worded for a user
        raise OAuthError(
            f"token request to {shown} refused: {exc.message}",
            retryable=exc.retryable,
            endpoint=shown,
        ) from None
    except httpx.HTTPError as exc:
        # `from None`: the httpx error holds the request, whose body is the secret.
        raise _transport_error(exc, shown, secrets) from None
    if 200 <= response.status_code < 300:
        return _tokens(response, raw, shown, issued_at)
    raise _status_error(response, raw, shown, secrets)


async def with_retries(
    call: Callable[[], Awaitable[TokenSet]], *, attempts: int, clock: Clock
) -> TokenSet:
    """`call` until it succeeds, fails for good, or `attempts` are spent; waits through
    clock.sleep with exponential backoff, a server's Retry-After (up to 10 s) as a floor."""
    policy = RetryPolicy(
        max_attempts=attempts, initial_interval=RETRY_INITIAL_S, max_interval=RETRY_MAX_S
    )
    rng = random.Random()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except OAuthError as exc:
            too_long = exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER_S
            if too_long or not policy.should_retry(attempt, exc.retryable):
                if attempt == 1:
                    raise
                raise OAuthError(
                    f"{exc.message} (after {attempt} attempts)",
                    error=exc.error,
                    retryable=exc.retryable,
                    endpoint=exc.endpoint,
                    status=exc.status,
                    retry_after=exc.retry_after,
                    attempts=attempt,
                ) from None
            await clock.sleep(policy.delay(attempt, rng=rng, retry_after=exc.retry_after))


async def _read(response: httpx.Response, shown: str) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise OAuthError(
                f"token endpoint {shown} answered with more than {MAX_BODY_BYTES} bytes",
                endpoint=shown,
                status=response.status_code,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _tokens(response: httpx.Response, raw: bytes, shown: str, issued_at: datetime) -> TokenSet:
    status = response.status_code
    body = _json_object(raw)
    if body is None:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise OAuthError(
            f"token endpoint {shown} answered HTTP {status} with a body that is not a JSON "
            f"object ({kind[:60]}); is token_url the token endpoint?",
            endpoint=shown,
            status=status,
        )
    try:
        return parse_token_response(body, issued_at)
    except TokenResponseError as exc:
        raise OAuthError(
            f"token endpoint {shown} answered HTTP {status} without a usable token: {exc}",
            error=error_code(body.get("error")),
            endpoint=shown,
            status=status,
        ) from None


def _status_error(
    response: httpx.Response, raw: bytes, shown: str, secrets: tuple[str, ...]
) -> OAuthError:
    status = response.status_code
    if 300 <= status < 400:
        return OAuthError(
            f"token endpoint {shown} answered with a redirect (HTTP {status}); token "
            "requests are never redirected, so token_url must be the endpoint itself",
            endpoint=shown,
            status=status,
        )
    body = _json_object(raw) or {}
    code = error_code(body.get("error"))
    description = body.get("error_description")
    said = code or "no error code"
    if isinstance(description, str) and description.strip():
        said += f": {scrub(description, secrets)}"
    retryable = status >= 500 or status == 429
    return OAuthError(
        f"token endpoint {shown} answered HTTP {status} ({said})",
        error=code,
        retryable=retryable,
        endpoint=shown,
        status=status,
        retry_after=parse_retry_after(response.headers.get("retry-after")) if retryable else None,
    )


def _transport_error(exc: httpx.HTTPError, shown: str, secrets: tuple[str, ...]) -> OAuthError:
    if isinstance(exc, httpx.TimeoutException):
        return OAuthError(f"token request to {shown} timed out", retryable=True, endpoint=shown)
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    # A certificate that does not verify will not verify later: not retryable.
    verify = [c for c in chain if isinstance(c, ssl.SSLCertVerificationError)]
    if verify or any("CERTIFICATE_VERIFY_FAILED" in str(c) for c in chain):
        why = getattr(verify[0], "verify_message", None) if verify else None
        return OAuthError(
            f"token request to {shown}: TLS certificate verification failed"
            + (f" ({why})" if why else ""),
            endpoint=shown,
        )
    retryable = isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol | httpx.ProxyError
    )
    detail = scrub(str(exc), secrets)
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return OAuthError(
        f"token request to {shown} failed: {what}",
        retryable=retryable,
        endpoint=shown,
    )
