"""T1 through a real TLS stack: our SSLContext served by uvicorn, scanned by sslyze against
Mozilla's profiles, and poked by plaintext, old-TLS and verifying clients. Also the
development certificate on a real filesystem."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from sealflow.api.security import SecurityHeadersMiddleware
from sealflow.tls import (
    TlsConfigError,
    TlsSettings,
    _pin_groups,
    build_ssl_context,
    client_ssl_context,
    ensure_dev_certificate,
    make_server,
)
from tests.support.tls_probe import plaintext_reply, sslyze


def _app() -> Starlette:
    async def index(request: object) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", index)], middleware=[Middleware(SecurityHeadersMiddleware)])


@contextmanager
def _serving(ctx: ssl.SSLContext) -> Iterator[int]:
    # We bind the socket ourselves (port 0) and hand it to uvicorn: no free-port race.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_server(_app(), "127.0.0.1", port, ctx, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert thread.is_alive(), "server thread died"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def dev_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module", params=["intermediate", "modern"])
def server(request: pytest.FixtureRequest, dev_dir: Path) -> Iterator[tuple[str, int, Path]]:
    profile = request.param
    ca, _cert, _key = ensure_dev_certificate(dev_dir)
    ctx = build_ssl_context(TlsSettings(dev_dir=dev_dir, profile=profile))
    with _serving(ctx) as port:
        yield profile, port, ca


def test_sslyze_mozilla_profile_compliant(server: tuple[str, int, Path]) -> None:
    profile, port, ca = server
    result = sslyze(profile, port, ca)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "OK - Compliant" in result.stdout
    curves = next(ln for ln in result.stdout.splitlines() if "Supported curves:" in ln)
    assert {c.strip() for c in curves.split(":", 1)[1].split(",")} == {
        "X25519",
        "secp256r1",
        "secp384r1",
    }


def test_sslyze_check_has_teeth(server: tuple[str, int, Path]) -> None:
    profile, port, ca = server
    if profile == "intermediate":
        # TLS 1.2 and its ciphers are not allowed by "modern".
        result = sslyze("modern", port, ca)
        assert result.returncode != 0
        assert "tls_versions" in result.stdout
    else:
        # Without the dev CA only path validation fails: the CA file is all we relax.
        result = sslyze(profile, port, None)
        assert result.returncode != 0
        compliance = result.stdout.split("COMPLIANCE AGAINST TLS CONFIGURATION")[1]
        issues = [ln.strip() for ln in compliance.splitlines() if ln.strip().startswith("* ")]
        assert len(issues) == 1 and issues[0].startswith("* certificate_path_validation"), issues


def test_plaintext_http_gets_no_http_answer(server: tuple[str, int, Path]) -> None:
    _profile, port, _ca = server
    received = plaintext_reply(port)
    assert not received.startswith(b"HTTP/")
    assert b"HTTP/1." not in received


def test_https_with_dev_ca_and_security_headers(server: tuple[str, int, Path]) -> None:
    _profile, port, ca = server
    with httpx.Client(verify=client_ssl_context(ca)) as client:
        response = client.get(f"https://localhost:{port}/")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "server" not in response.headers


def test_client_without_dev_ca_refuses(server: tuple[str, int, Path]) -> None:
    _profile, port, _ca = server
    with httpx.Client(verify=client_ssl_context(None)) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://localhost:{port}/")


def _handshake(port: int, ca: Path, version: ssl.TLSVersion) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.0/1.1
    ctx.minimum_version = ctx.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def _refused(port: int, ca: Path, version: ssl.TLSVersion) -> None:
    with pytest.raises(ssl.SSLError) as info:
        _handshake(port, ca, version)
    # The client sent its hello and the server hung up or alerted; a client that could not
    # even offer the version would fail with NO_PROTOCOLS_AVAILABLE instead.
    assert info.value.reason != "NO_PROTOCOLS_AVAILABLE", info.value


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_old_tls_versions_refused(server: tuple[str, int, Path]) -> None:
    profile, port, ca = server
    _refused(port, ca, ssl.TLSVersion.TLSv1)
    _refused(port, ca, ssl.TLSVersion.TLSv1_1)
    if profile == "modern":
        _refused(port, ca, ssl.TLSVersion.TLSv1_2)
    else:
        assert _handshake(port, ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(port, ca, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


# --- serving guards --------------------------------------------------------------------------


def test_make_server_refuses_anything_but_our_context(dev_dir: Path) -> None:
    ctx = build_ssl_context(TlsSettings(dev_dir=dev_dir))
    with pytest.raises(TypeError):
        make_server(_app(), "127.0.0.1", 0, None)  # type: ignore[arg-type]
    for option in ("ssl_certfile", "ssl_keyfile", "ssl_ciphers", "workers", "reload"):
        with pytest.raises(TypeError, match=option):
            make_server(_app(), "127.0.0.1", 0, ctx, **{option: "x"})


def test_configured_certificate_is_used(tmp_path: Path) -> None:
    _ca, cert, key = ensure_dev_certificate(tmp_path / "other")
    settings = TlsSettings(dev_dir=tmp_path / "unused", cert_file=cert, key_file=key)
    build_ssl_context(settings)
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError):
        TlsSettings(dev_dir=tmp_path, cert_file=cert)
    with pytest.raises(ValueError):
        TlsSettings(dev_dir=tmp_path, profile="old")  # type: ignore[arg-type]


def test_group_pinning_fails_loudly() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TlsConfigError, match="group list"):
        _pin_groups(ctx, "X25519:no-such-group")


# --- development certificate -----------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _verify(ca: Path, cert: Path, when: dt.datetime, host: str = "localhost") -> None:
    # The same RFC 5280 / CA-B Forum verifier sslyze uses for its path validation.
    store = Store([x509.load_pem_x509_certificate(ca.read_bytes())])
    subject: x509.DNSName | x509.IPAddress
    if host[0].isdigit() or ":" in host:
        subject = x509.IPAddress(ipaddress.ip_address(host))
    else:
        subject = x509.DNSName(host)
    verifier = PolicyBuilder().store(store).time(when).build_server_verifier(subject)
    verifier.verify(x509.load_pem_x509_certificate(cert.read_bytes()), [])


def test_dev_certificate_first_run(tmp_path: Path) -> None:
    dev = tmp_path / "tls"
    ca, cert, key = ensure_dev_certificate(dev)
    assert stat.S_IMODE(os.stat(dev).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dev / "dev-ca.key").st_mode) == 0o600
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 90
    constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    for host in ("localhost", "127.0.0.1", "::1"):
        _verify(ca, cert, _now(), host)
    with pytest.raises(x509.verification.VerificationError):
        _verify(ca, cert, _now(), "example.com")


def test_dev_certificate_reused(tmp_path: Path) -> None:
    first = ensure_dev_certificate(tmp_path)
    contents = [p.read_bytes() for p in first]
    second = ensure_dev_certificate(tmp_path, clock=lambda: _now() + dt.timedelta(days=10))
    assert second == first
    assert [p.read_bytes() for p in second] == contents


def test_dev_leaf_regenerated_near_expiry(tmp_path: Path) -> None:
    ca, cert, key = ensure_dev_certificate(tmp_path)
    old_ca, old_leaf, old_key = ca.read_bytes(), cert.read_bytes(), key.read_bytes()
    later = _now() + dt.timedelta(days=61)  # the 90-day leaf now expires within 30 days
    ensure_dev_certificate(tmp_path, clock=lambda: later)
    assert ca.read_bytes() == old_ca  # the CA clients already trust is kept
    assert cert.read_bytes() != old_leaf
    assert key.read_bytes() != old_key
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    _verify(ca, cert, later + dt.timedelta(days=60))


def test_dev_leaf_regenerated_for_new_names(tmp_path: Path) -> None:
    ca, cert, _key = ensure_dev_certificate(tmp_path)
    ensure_dev_certificate(tmp_path, hostnames=("localhost", "sealflow.test"))
    _verify(ca, cert, _now(), "sealflow.test")


def test_dev_ca_regenerated_before_it_expires(tmp_path: Path) -> None:
    ca, cert, _key = ensure_dev_certificate(tmp_path)
    old_ca = ca.read_bytes()
    much_later = _now() + dt.timedelta(days=3650 - 100)
    ensure_dev_certificate(tmp_path, clock=lambda: much_later)
    assert ca.read_bytes() != old_ca
    _verify(ca, cert, much_later)


def test_dev_key_with_loose_mode_refused(tmp_path: Path) -> None:
    _ca, _cert, key = ensure_dev_certificate(tmp_path)
    key.chmod(0o644)
    with pytest.raises(TlsConfigError, match="mode 644"):
        ensure_dev_certificate(tmp_path)


def test_dev_certificate_needs_aware_clock(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ensure_dev_certificate(tmp_path, clock=lambda: dt.datetime(2030, 1, 1))
