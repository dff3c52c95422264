"""The HTTP connector: any REST call, with the step's authentication injected.

Timeouts: the engine passes the step's effective timeout in ctx.timeout_s (the operator's
connector_timeout_s, 45 s, unless the step's own `timeout` field raises it, up to
http_timeout_max_s, 15 min). The input's `timeout` can only shorten it. The handler enforces
it as a deadline for the whole call (connect, redirects, body) and fails with
ConnectorError(code="timeout", retryable=True).

Authentication (ctx.credential, already decrypted by the interceptor): api_key {key, in:
header|query, param}, bearer {token}, basic {username, password}, oauth2_code/oauth2_client
{access_token}. A
header the step sets itself (e.g. `Authorization: "Bearer {{ $.auth.token }}"`) wins over
the injected one.

Only ctx.http_client() reaches the network: it is the SSRF-guarded client (ssrf.py).
"""

from __future__ import annotations

import base64
import math
import ssl
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx
import orjson

from sealflow.connectors.base import Connector, Credential, Operation, StepContext
from sealflow.core.errors import ConnectorError

SCHEMA = "https://json-schema.org/draft/2020-12/schema"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
AUTH_TYPES = ("api_key", "bearer", "basic", "oauth2_code", "oauth2_client")
# The engine refuses outputs over max_step_output_bytes; this only stops a huge download
# from filling memory before that check.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
ERROR_BODY_CHARS = 2_000

_scalar = {"type": ["string", "number", "boolean"]}
INPUT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA,
    "type": "object",
    "properties": {
        "method": {"enum": list(METHODS)},
        "url": {"type": "string", "pattern": "^[hH][tT][tT][pP][sS]?://.+", "maxLength": 8192},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "query": {
            "type": "object",
            "additionalProperties": {"anyOf": [_scalar, {"type": "array", "items": _scalar}]},
        },
        "json": {"description": "a JSON body (any value)"},
        "form": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"type": "string", "description": "a raw body; set Content-Type in headers"},
        "timeout": {
            "type": "number",
            "minimum": 1,
            "description": "seconds; at most the step's timeout (raise that, up to the "
            "operator's http_timeout_max_s, with the step-level `timeout` field)",
        },
        "expect_json": {
            "type": "boolean",
            "description": "parse the body as JSON; default: when the Content-Type is JSON",
        },
    },
    "required": ["method", "url"],
    "additionalProperties": False,
    # At most one of json, form and body.
    "dependentSchemas": {
        "json": {"not": {"anyOf": [{"required": ["form"]}, {"required": ["body"]}]}},
        "form": {"not": {"required": ["body"]}},
    },
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA,
    "type": "object",
    "properties": {
        "status": {"type": "integer"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"description": "parsed JSON when the response is JSON, else text"},
        "elapsed_ms": {"type": "number"},
    },
    "required": ["status", "headers", "body", "elapsed_ms"],
    "additionalProperties": False,
}


def display_url(url: httpx.URL) -> str:
    """The URL as logs and errors may show it: no user info, query or fragment (an API key
    may travel in the query)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}{url.path}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _field(credential: Credential, name: str, default: str | None = None) -> str:
    if name not in credential.fields:
        if default is not None:
            return default
        raise ConnectorError(
            f"authentication {credential.name!r} ({credential.type}) has no {name!r} field",
            code="auth_invalid",
        )
    return credential.secret(name)


def apply_auth(
    credential: Credential | None, headers: dict[str, str], params: dict[str, Any]
) -> None:
    """Inject the credential into headers/params in place; explicit headers win."""
    if credential is None:
        return
    present = {name.lower() for name in headers}

    def set_header(name: str, value: str) -> None:
        if name.lower() not in present:
            headers[name] = value

    kind = credential.type
    if kind == "api_key":
        name = _field(credential, "param", "X-Api-Key")
        where = _field(credential, "in", "header")
        if where == "header":
            set_header(name, _field(credential, "key"))
        elif where == "query":
            params[name] = _field(credential, "key")
        else:
            raise ConnectorError(
                f"authentication {credential.name!r}: api_key 'in' must be header or query",
                code="auth_invalid",
            )
    elif kind == "bearer":
        set_header("Authorization", f"Bearer {_field(credential, 'token')}")
    elif kind == "basic":
        pair = f"{_field(credential, 'username')}:{_field(credential, 'password')}"
        set_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode("ascii"))
    elif kind in ("oauth2_code", "oauth2_client"):
        set_header("Authorization", f"Bearer {_field(credential, 'access_token')}")
    else:
        raise ConnectorError(
            f"the http connector cannot use {kind!r} authentications", code="auth_unsupported"
        )


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _decode_body(response: httpx.Response, raw: bytes, expect_json: bool | None) -> Any:
    want_json = _is_json(response.headers.get("content-type", "")) if expect_json is None \
        else expect_json
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    if not want_json:
        return text
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        if expect_json:
            raise ConnectorError(
                f"response of HTTP {response.status_code} is not valid JSON",
                code="invalid_json",
                details={"status": response.status_code, "body": text[:ERROR_BODY_CHARS]},
            ) from None
        return text


async def _read(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ConnectorError(
                f"response body is over {MAX_RESPONSE_BYTES} bytes", code="response_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(method: str, shown: str, response: httpx.Response, raw: bytes) -> ConnectorError:
    status = response.status_code
    retryable = status >= 500 or status == 429
    text = raw.decode(response.encoding or "utf-8", errors="replace")[:ERROR_BODY_CHARS]
    return ConnectorError(
        f"HTTP {status} from {method} {shown}",
        code=f"http_{status}",
        retryable=retryable,
        retry_after=parse_retry_after(response.headers.get("retry-after")) if retryable else None,
        details={"status": status, "body": text},
    )


def _transport_error(exc: Exception, method: str, shown: str) -> ConnectorError:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return ConnectorError(f"{method} {shown} timed out", code="timeout", retryable=True)
    if isinstance(exc, httpx.TooManyRedirects):
        return ConnectorError(f"{method} {shown}: too many redirects", code="too_many_redirects")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConnectorError(f"{method} {shown}: {exc}", code="invalid_url")
    cause: BaseException | None = exc
    while cause is not None:  # a certificate that does not verify will not verify later
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            cause
        ):
            return ConnectorError(
                f"{method} {shown}: TLS certificate verification failed ({cause})",
                code="tls_error",
            )
        cause = cause.__cause__ or cause.__context__
    return ConnectorError(f"{method} {shown}: {exc}", code="network_error", retryable=True)


def _effective_timeout(input: dict[str, Any], ctx: StepContext) -> float:
    requested = input.get("timeout")
    cap = float(ctx.timeout_s)
    if requested is None:
        return cap
    if float(requested) > cap:
        ctx.log("http timeout capped by the step timeout", requested_s=requested, timeout_s=cap)
    return min(float(requested), cap)


def _request_kwargs(input: dict[str, Any], url: httpx.URL, ctx: StepContext) -> dict[str, Any]:
    headers = {str(k): str(v) for k, v in (input.get("headers") or {}).items()}
    params = dict(input.get("query") or {})
    apply_auth(ctx.credential, headers, params)
    kwargs: dict[str, Any] = {"headers": headers, "url": url}
    if params:  # merged into the URL's own query (httpx's params= would replace it)
        kwargs["url"] = url.copy_merge_params(params)
    bodies = [key for key in ("json", "form", "body") if key in input]
    if len(bodies) > 1:
        raise ConnectorError("give at most one of json, form and body", code="invalid_input")
    if "json" in input:
        kwargs["json"] = input["json"]
    elif "form" in input:
        kwargs["data"] = {str(k): str(v) for k, v in input["form"].items()}
    elif "body" in input:
        kwargs["content"] = str(input["body"]).encode()
    return kwargs


async def request(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    method = str(input["method"]).upper()
    if method not in METHODS:
        raise ConnectorError(f"unsupported HTTP method {method!r}", code="invalid_input")
    try:
        url = httpx.URL(str(input["url"]))
    except httpx.InvalidURL as exc:
        raise ConnectorError(f"invalid URL: {exc}", code="invalid_url") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConnectorError("the URL must be http:// or https:// with a host", code="invalid_url")
    shown = display_url(url)
    kwargs = _request_kwargs(input, url, ctx)
    timeout = _effective_timeout(input, ctx)
    client = ctx.http_client()
    start = time.perf_counter()
    try:
        with anyio.fail_after(timeout):
            async with client.stream(
                method, timeout=timeout, follow_redirects=True, **kwargs
            ) as response:
                raw = await _read(response)
    except ConnectorError as exc:  # the SSRF guard's refusal, or an oversized body
        ctx.log(f"{method} {shown} failed: {exc.code}", method=method, url=shown, code=exc.code)
        raise
    except (TimeoutError, httpx.HTTPError) as exc:
        error = _transport_error(exc, method, shown)
        ctx.log(f"{method} {shown} failed: {error.code}", method=method, url=shown,
                code=error.code)
        raise error from None
    elapsed_ms = round((time.perf_counter() - start) * 1000, 1)
    status = response.status_code
    ctx.log(f"{method} {shown} -> {status} in {elapsed_ms} ms", method=method, url=shown,
            status=status, elapsed_ms=elapsed_ms, redirects=len(response.history))
    if status >= 400:
        raise _status_error(method, shown, response, raw)
    return {
        "status": status,
        "headers": _headers(response),
        "body": None if method == "HEAD" else _decode_body(response, raw, input.get("expect_json")),
        "elapsed_ms": elapsed_ms,
    }


def _headers(response: httpx.Response) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def connector() -> Connector:
    return Connector(
        name="http",
        description="Call any HTTP/REST API; the step's authentication is injected.",
        operations={
            "request": Operation(
                name="request",
                description="Send one HTTP request and return status, headers and body.",
                input_schema=INPUT_SCHEMA,
                output_schema=OUTPUT_SCHEMA,
                handler=request,
            )
        },
        auth_types=AUTH_TYPES,
        extra={"timeout_limit": "http_timeout_max_s"},
    )
