"""The http connector against real local servers (127.0.0.1 only) through the real
SSRF-guarded client: bodies, query, headers, each authentication type, status handling,
Retry-After, timeouts, redirects and a real TLS handshake with SNI."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sealflow.connectors.base import Credential
from sealflow.connectors.http import connector, parse_retry_after, request
from sealflow.connectors.ssrf import build_client
from sealflow.core.errors import ConnectorError
from sealflow.core.secrets import Secret

ALLOW = ["127.0.0.1/32"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeContext:
    """Test double of the engine's StepContext (an outer seam)."""

    client: httpx.AsyncClient
    credential: Credential | None = None
    timeout_s: float = 10.0
    account_id: str = "acc_1"
    execution_id: str = "exe_1"
    step_name: str = "fetch"
    logs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def log(self, message: str, **fields: Any) -> None:
        self.logs.append((message, fields))

    def http_client(self) -> httpx.AsyncClient:
        return self.client


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        record = {
            "method": self.command,
            "path": url.path,
            "query": parse_qs(url.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(),
        }
        self.server.received.append(record)  # type: ignore[attr-defined]
        path = url.path
        if path == "/echo":
            return self._send(200, json.dumps(record).encode(), "application/json")
        if path == "/text":
            return self._send(200, "héllo".encode(), "text/plain; charset=utf-8")
        if path == "/vnd":
            return self._send(200, b'{"data": [1]}', "application/vnd.api+json")
        if path == "/badjson":
            return self._send(200, b"{not json", "application/json")
        if path == "/empty":
            return self._send(204, b"", None)
        if path == "/cookies":
            return self._send(200, b"ok", "text/plain",
                              [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Thing", "y")])
        if path == "/503":
            return self._send(503, b"busy", "text/plain", [("Retry-After", "7")])
        if path == "/429":
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
            return self._send(429, b"slow down", "text/plain",
                              [("Retry-After", format_datetime(when, usegmt=True))])
        if path == "/400":
            return self._send(400, b'{"error": "bad"}', "application/json")
        if path == "/500":
            return self._send(500, b"x" * 10_000, "text/plain")
        if path == "/slow":
            time.sleep(2)
            return self._send(200, b"late", "text/plain")
        if path == "/drip":  # each read is quick, the whole body is not
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.15)
            return None
        if path.startswith("/hop/"):
            n = int(path.rsplit("/", 1)[1])
            return self._send(302, b"", None, [("Location", f"/hop/{n - 1}" if n > 1 else "/echo")])
        if path == "/to-metadata":
            return self._send(302, b"", None, [("Location", "http://169.254.169.254/latest/")])
        return self._send(404, b"no such path", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str | None,
              headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.received = []  # type: ignore[attr-defined]
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, httpd.server_address[1]


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    httpd, port = _serve()
    yield f"http://127.0.0.1:{port}", httpd.received  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


async def _call(input: dict[str, Any], ctx_args: dict[str, Any] | None = None,
                allow: list[str] = ALLOW, ca_bundle: str | None = None,
                ) -> tuple[Any, FakeContext]:
    async with build_client(allow=allow, ca_bundle=ca_bundle, timeout=10) as client:
        ctx = FakeContext(client, **(ctx_args or {}))
        return await request(input, ctx), ctx


async def _fail(input: dict[str, Any], **kwargs: Any) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        await _call(input, **kwargs)
    return caught.value


# ---- bodies, query, headers, output --------------------------------------------------

@pytest.mark.anyio
async def test_json_body_query_and_headers(server) -> None:
    base, received = server
    out, _ = await _call({
        "method": "POST", "url": f"{base}/echo?fixed=1",
        "headers": {"X-Trace": "abc"},
        "query": {"q": "a b", "n": 3, "flag": True, "tags": ["x", "y"]},
        "json": {"name": "Ada", "n": [1, 2]},
    })
    assert out["status"] == 200 and isinstance(out["elapsed_ms"], float)
    got = received[-1]
    assert got["method"] == "POST"
    assert got["query"] == {"fixed": ["1"], "q": ["a b"], "n": ["3"], "flag": ["true"],
                            "tags": ["x", "y"]}
    assert got["headers"]["x-trace"] == "abc"
    assert got["headers"]["content-type"] == "application/json"
    assert json.loads(got["body"]) == {"name": "Ada", "n": [1, 2]}
    assert out["body"]["path"] == "/echo"  # parsed because the response is JSON
    assert out["headers"]["content-type"] == "application/json"


@pytest.mark.anyio
async def test_form_and_raw_bodies(server) -> None:
    base, received = server
    await _call({"method": "PUT", "url": f"{base}/echo", "form": {"a": "1", "b": "x y"}})
    assert received[-1]["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(received[-1]["body"]) == {"a": ["1"], "b": ["x y"]}
    await _call({"method": "PATCH", "url": f"{base}/echo", "body": "id,name\n1,Ada",
                 "headers": {"Content-Type": "text/csv"}})
    assert received[-1]["body"] == "id,name\n1,Ada"
    assert received[-1]["headers"]["content-type"] == "text/csv"


@pytest.mark.anyio
async def test_body_decoding(server) -> None:
    base, _ = server
    text, _ = await _call({"method": "GET", "url": f"{base}/text"})
    assert text["body"] == "héllo"
    vnd, _ = await _call({"method": "GET", "url": f"{base}/vnd"})
    assert vnd["body"] == {"data": [1]}
    bad, _ = await _call({"method": "GET", "url": f"{base}/badjson"})
    assert bad["body"] == "{not json"  # auto: falls back to text
    as_text, _ = await _call({"method": "GET", "url": f"{base}/echo", "expect_json": False})
    assert isinstance(as_text["body"], str)
    empty, _ = await _call({"method": "DELETE", "url": f"{base}/empty"})
    assert empty["status"] == 204 and empty["body"] == ""
    head, _ = await _call({"method": "HEAD", "url": f"{base}/text"})
    assert head["status"] == 200 and head["body"] is None
    error = await _fail({"method": "GET", "url": f"{base}/badjson", "expect_json": True})
    assert error.code == "invalid_json" and not error.retryable


@pytest.mark.anyio
async def test_response_headers_lower_case_and_joined(server) -> None:
    base, _ = server
    out, _ = await _call({"method": "GET", "url": f"{base}/cookies"})
    assert out["headers"]["set-cookie"] == "a=1, b=2"
    assert out["headers"]["x-thing"] == "y"
    assert all(name == name.lower() for name in out["headers"])


# ---- authentication -------------------------------------------------------------------

def _cred(kind: str, **fields: str | Secret) -> Credential:
    return Credential(id="auth_1", name="My API", type=kind, fields=fields)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("credential", "header", "expected"),
    [
        (_cred("api_key", key=Secret("k-123"), param="X-Api-Key", **{"in": "header"}),
         "x-api-key", "k-123"),
        (_cred("api_key", key=Secret("k-123")), "x-api-key", "k-123"),  # defaults
        (_cred("bearer", token=Secret("tok-456")), "authorization", "Bearer tok-456"),
        (_cred("basic", username="ada", password=Secret("pä:ss")), "authorization",
         "Basic " + base64.b64encode("ada:pä:ss".encode()).decode()),
        (_cred("oauth2_code", access_token=Secret("at-789")), "authorization", "Bearer at-789"),
        (_cred("oauth2_client", access_token=Secret("at-1")), "authorization",
         "Bearer at-1"),
    ],
)
async def test_auth_injected_into_headers(server, credential, header, expected) -> None:
    base, received = server
    await _call({"method": "GET", "url": f"{base}/echo"}, {"credential": credential})
    assert received[-1]["headers"][header] == expected


@pytest.mark.anyio
async def test_api_key_in_query_never_logged(server) -> None:
    base, received = server
    cred = _cred("api_key", key=Secret("k-secret"), param="api_key", **{"in": "query"})
    _, ctx = await _call({"method": "GET", "url": f"{base}/echo?page=2"}, {"credential": cred})
    assert received[-1]["query"] == {"page": ["2"], "api_key": ["k-secret"]}
    assert "k-secret" not in repr(ctx.logs) and "page=2" not in repr(ctx.logs)
    message, fields = ctx.logs[-1]
    assert fields == {"method": "GET", "url": f"{base}/echo", "status": 200,
                      "elapsed_ms": fields["elapsed_ms"], "redirects": 0}
    assert message.startswith(f"GET {base}/echo -> 200")


@pytest.mark.anyio
async def test_explicit_header_wins_over_injected(server) -> None:
    base, received = server
    cred = _cred("bearer", token=Secret("injected"))
    await _call({"method": "GET", "url": f"{base}/echo",
                 "headers": {"authorization": "Token explicit"}}, {"credential": cred})
    assert received[-1]["headers"]["authorization"] == "Token explicit"


@pytest.mark.anyio
async def test_auth_errors_name_the_field_not_the_secret(server) -> None:
    base, received = server
    error = await _fail({"method": "GET", "url": f"{base}/echo"},
                        ctx_args={"credential": _cred("bearer", tokn=Secret("oops-val"))})
    assert error.code == "auth_invalid" and "'token'" in error.message
    assert "oops-val" not in error.message
    error = await _fail({"method": "GET", "url": f"{base}/echo"},
                        ctx_args={"credential": _cred("hmac", key=Secret("x"))})
    assert error.code == "auth_unsupported"
    assert received == []  # nothing was sent


# ---- status handling and Retry-After --------------------------------------------------

@pytest.mark.anyio
async def test_503_is_retryable_with_retry_after(server) -> None:
    base, _ = server
    error = await _fail({"method": "GET", "url": f"{base}/503?x=1"})
    assert error.code == "http_503" and error.retryable and error.retry_after == 7.0
    assert error.details == {"status": 503, "body": "busy"}
    assert "x=1" not in error.message


@pytest.mark.anyio
async def test_429_with_http_date(server) -> None:
    base, _ = server
    error = await _fail({"method": "POST", "url": f"{base}/429", "json": {}})
    assert error.code == "http_429" and error.retryable
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


@pytest.mark.anyio
async def test_400_is_not_retryable_and_500_body_is_truncated(server) -> None:
    base, _ = server
    error = await _fail({"method": "GET", "url": f"{base}/400"})
    assert error.code == "http_400" and not error.retryable and error.retry_after is None
    assert error.details["body"] == '{"error": "bad"}'
    error = await _fail({"method": "GET", "url": f"{base}/500"})
    assert error.code == "http_500" and error.retryable and len(error.details["body"]) == 2000


def test_parse_retry_after() -> None:
    now = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


# ---- timeouts, network errors, redirects ---------------------------------------------

@pytest.mark.anyio
async def test_step_timeout_is_enforced(server) -> None:
    base, _ = server
    error = await _fail({"method": "GET", "url": f"{base}/slow"}, ctx_args={"timeout_s": 0.5})
    assert error.code == "timeout" and error.retryable


@pytest.mark.anyio
async def test_input_timeout_shortens_and_cannot_raise(server) -> None:
    base, _ = server
    error = await _fail({"method": "GET", "url": f"{base}/slow", "timeout": 1})
    assert error.code == "timeout"
    with pytest.raises(ConnectorError, match="timed out"):
        async with build_client(allow=ALLOW, ca_bundle=None, timeout=10) as client:
            ctx = FakeContext(client, timeout_s=0.5)
            try:
                await request({"method": "GET", "url": f"{base}/slow", "timeout": 60}, ctx)
            finally:
                assert any("capped" in message for message, _ in ctx.logs)


@pytest.mark.anyio
async def test_timeout_covers_the_whole_body(server) -> None:
    base, _ = server  # 20 bytes, 0.15 s apart: no single read times out, the call does
    started = time.monotonic()
    error = await _fail({"method": "GET", "url": f"{base}/drip"}, ctx_args={"timeout_s": 1})
    assert error.code == "timeout" and time.monotonic() - started < 2.5


@pytest.mark.anyio
async def test_refused_connection_is_a_retryable_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens
    error = await _fail({"method": "GET", "url": f"http://127.0.0.1:{port}/"})
    assert error.code == "network_error" and error.retryable


@pytest.mark.anyio
async def test_redirects_followed_up_to_five(server) -> None:
    base, _ = server
    out, ctx = await _call({"method": "GET", "url": f"{base}/hop/5"})
    assert out["status"] == 200 and ctx.logs[-1][1]["redirects"] == 5
    error = await _fail({"method": "GET", "url": f"{base}/hop/6"})
    assert error.code == "too_many_redirects" and not error.retryable


@pytest.mark.anyio
async def test_redirect_to_metadata_is_blocked(server) -> None:
    base, _ = server
    error = await _fail({"method": "GET", "url": f"{base}/to-metadata"})
    assert error.code == "ssrf_blocked" and "169.254.169.254" in error.message


@pytest.mark.anyio
async def test_ssrf_guard_applies_without_allow_list(server) -> None:
    base, received = server
    error = await _fail({"method": "GET", "url": f"{base}/echo"}, allow=[])
    assert error.code == "ssrf_blocked" and "SEALFLOW_SSRF_ALLOW" in error.message
    assert received == []


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http://", "not a url"])
async def test_invalid_urls(url: str) -> None:
    error = await _fail({"method": "GET", "url": url})
    assert error.code == "invalid_url" and not error.retryable


def test_operation_declares_schemas_and_auth_types() -> None:
    from jsonschema import Draft202012Validator

    conn = connector()
    op = conn.operations["request"]
    Draft202012Validator.check_schema(op.input_schema)
    validator = Draft202012Validator(op.input_schema)
    assert validator.is_valid({"method": "GET", "url": "https://api.example.test/x"})
    assert not validator.is_valid({"method": "GET", "url": "file:///etc/passwd"})
    assert not validator.is_valid({"method": "GET", "url": "https://x.test", "json": {},
                                   "body": "x"})
    assert not validator.is_valid({"method": "TRACE", "url": "https://x.test"})
    assert set(conn.auth_types) == {"api_key", "bearer", "basic", "oauth2_code", "oauth2_client"}


# ---- TLS: certificates verified, SNI and host name kept -------------------------------

def _tls_material(tmp: Path) -> tuple[Path, ssl.SSLContext, list[str]]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealflow test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path = tmp / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = tmp / "leaf.pem", tmp / "leaf.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    sni_seen: list[str] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni_seen.append(name)  # type: ignore
    return ca_path, server_ctx, sni_seen


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str], list[dict]]]:
    ca_path, server_ctx, sni_seen = _tls_material(tmp_path)
    httpd, port = _serve(server_ctx)
    yield port, ca_path, sni_seen, httpd.received  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.anyio
async def test_https_keeps_sni_and_host_with_operator_ca(tls_server) -> None:
    port, ca_path, sni_seen, received = tls_server
    out, _ = await _call({"method": "GET", "url": f"https://localhost:{port}/echo"},
                         ca_bundle=str(ca_path))
    assert out["status"] == 200
    assert sni_seen == ["localhost"]
    assert received[-1]["headers"]["host"] == f"localhost:{port}"


@pytest.mark.anyio
async def test_https_unknown_ca_is_refused(tls_server) -> None:
    port, _, _, received = tls_server
    error = await _fail({"method": "GET", "url": f"https://localhost:{port}/echo"})
    assert error.code == "tls_error" and not error.retryable
    assert received == []


@pytest.mark.anyio
async def test_https_host_name_mismatch_is_refused(tls_server) -> None:
    port, ca_path, _, received = tls_server  # the certificate names localhost only
    error = await _fail({"method": "GET", "url": f"https://127.0.0.1:{port}/echo"},
                        ca_bundle=str(ca_path))
    assert error.code == "tls_error"
    assert received == []
