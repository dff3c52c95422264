"""TLS-only transport (SPEC T1): the server's `ssl.SSLContext`, the development certificate,
and the uvicorn launcher that serves HTTPS and nothing else.

Profiles follow Mozilla's server-side TLS guidelines (5.7, the version sslyze checks):
"intermediate" is TLS 1.2+ with the Mozilla cipher list, "modern" is TLS 1.3 only. Both pin
the key-exchange groups to X25519, P-256 and P-384 (see `_pin_groups`).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import ipaddress
import os
import secrets
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Profile = Literal["intermediate", "modern"]
Clock = Callable[[], dt.datetime]

# Mozilla intermediate, TLS 1.2 part. TLS 1.3 suites are OpenSSL's defaults, which are exactly
# Mozilla's three (Python has no API to set them). The DHE-RSA suites only apply to an
# operator's RSA certificate; Python sets no DH parameters, so OpenSSL never picks them.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
GROUPS = "X25519:P-256:P-384"

# Mozilla 5.7 caps "modern" certificates at 90 days (366 for intermediate); sslyze checks it.
LEAF_LIFETIME = dt.timedelta(days=90)
LEAF_RENEW_BEFORE = dt.timedelta(days=30)
CA_LIFETIME = dt.timedelta(days=3650)
# Tolerate a client clock slightly behind ours without stretching the lifespan past 90 days.
_BACKDATE = dt.timedelta(hours=1)

CA_CERT_NAME, CA_KEY_NAME = "dev-ca.pem", "dev-ca.key"
LEAF_CERT_NAME, LEAF_KEY_NAME = "dev-cert.pem", "dev-cert.key"


class TlsConfigError(RuntimeError):
    """The TLS configuration cannot be applied safely; the server must not start."""


@dataclass(frozen=True)
class TlsSettings:
    """TLS options. With no cert_file/key_file a development certificate is kept in dev_dir."""

    dev_dir: Path
    profile: Profile = "intermediate"
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.profile not in ("intermediate", "modern"):
            raise ValueError(
                f"tls profile must be 'intermediate' or 'modern', not {self.profile!r}"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls cert_file and key_file must be set together")

    @property
    def uses_dev_certificate(self) -> bool:
        return self.cert_file is None


# --- development certificate -------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two processes starting at once must not each write half of a key/certificate pair.
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # The file is born with its final mode (never chmod-ed after the secret is in it) and
    # replaces the old one atomically, so a reader never sees a partial key.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, pem, 0o600)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise TlsConfigError(f"private key {path} has mode {mode:o}; it must be 600")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsConfigError(f"{path} is not an EC private key")
    return key


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    return x509.KeyUsage(**(flags | enabled))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, start: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealflow development"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sealflow development CA {now:%Y-%m-%d}"),
        ]
    )
    cert = (
        _builder(name, name, key, now - _BACKDATE)
        .not_valid_after(now - _BACKDATE + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _san(hostnames: Sequence[str], ips: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if not names:
        raise ValueError("the development certificate needs at least one hostname or IP")
    return x509.SubjectAlternativeName(names)


def _new_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    san: x509.SubjectAlternativeName,
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    # What RFC 5280 / CA-B Forum verifiers (cryptography's, used by sslyze) demand of a leaf:
    # AKI, SAN, serverAuth EKU, not a CA, and a lifespan within Mozilla's 90 days.
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(san[0].value)[:64])])
    not_before = now - _BACKDATE
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        _builder(subject, ca_cert.subject, key, not_before)
        .not_valid_after(min(not_before + LEAF_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _leaf_still_good(
    leaf: x509.Certificate | None,
    ca_cert: x509.Certificate,
    san: x509.SubjectAlternativeName,
    now: dt.datetime,
) -> bool:
    if leaf is None or leaf.not_valid_after_utc - now < LEAF_RENEW_BEFORE:
        return False
    try:
        leaf.verify_directly_issued_by(ca_cert)
        current = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(current) == set(san)


def ensure_dev_certificate(
    dev_dir: Path,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    clock: Clock | None = None,
) -> tuple[Path, Path, Path]:
    """Create (first run) or reuse a development CA and a leaf signed by it.

    Returns (ca_cert, leaf_cert, leaf_key). The leaf is reissued when it expires within 30
    days or no longer names `hostnames`/`ips`; the CA is reissued only when it would expire
    before a fresh leaf does. Private keys are created with mode 0600.
    """
    now = (clock or _utcnow)()
    if now.tzinfo is None:
        raise ValueError("clock must return an aware datetime")
    san = _san(hostnames, ips)
    dev_dir = Path(dev_dir)
    dev_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = {n: dev_dir / n for n in (CA_CERT_NAME, CA_KEY_NAME, LEAF_CERT_NAME, LEAF_KEY_NAME)}
    with _locked(dev_dir):
        ca_cert = _load_cert(paths[CA_CERT_NAME])
        ca_key = _read_key(paths[CA_KEY_NAME]) if paths[CA_KEY_NAME].exists() else None
        if (
            ca_cert is None
            or ca_key is None
            or ca_cert.public_key() != ca_key.public_key()
            or ca_cert.not_valid_after_utc - now < LEAF_LIFETIME + LEAF_RENEW_BEFORE
        ):
            ca_cert, ca_key = _new_ca(now)
            _write_key(paths[CA_KEY_NAME], ca_key)
            _write_atomic(
                paths[CA_CERT_NAME], ca_cert.public_bytes(serialization.Encoding.PEM), 0o644
            )

        leaf = _load_cert(paths[LEAF_CERT_NAME])
        key_ok = paths[LEAF_KEY_NAME].exists() and (
            leaf is not None and _read_key(paths[LEAF_KEY_NAME]).public_key() == leaf.public_key()
        )
        if not (key_ok and _leaf_still_good(leaf, ca_cert, san, now)):
            leaf, leaf_key = _new_leaf(ca_cert, ca_key, san, now)
            _write_key(paths[LEAF_KEY_NAME], leaf_key)
            pem = leaf.public_bytes(serialization.Encoding.PEM)
            _write_atomic(paths[LEAF_CERT_NAME], pem, 0o644)
    return paths[CA_CERT_NAME], paths[LEAF_CERT_NAME], paths[LEAF_KEY_NAME]


# --- SSLContext ----------------------------------------------------------------------------

_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL: SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl()


def _libssl() -> ctypes.CDLL:
    """The libssl that Python's _ssl module uses (dlsym on _ssl's handle searches its deps)."""
    import _ssl  # only the C module knows which libssl it was linked to

    # None (the process's global symbols) covers a Python linked statically to OpenSSL.
    for candidate in (getattr(_ssl, "__file__", None), None):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        if not all(hasattr(lib, f) for f in ("OpenSSL_version_num", "SSL_CTX_ctrl")):
            continue
        lib.OpenSSL_version_num.restype = ctypes.c_ulong
        if lib.OpenSSL_version_num() == ssl.OPENSSL_VERSION_NUMBER:
            return lib
    raise TlsConfigError(f"cannot find the libssl of Python's ssl module ({ssl.OPENSSL_VERSION})")


def _pin_groups(ctx: ssl.SSLContext, groups: str) -> None:
    """Restrict key exchange to `groups`.

    OpenSSL 3's default list adds x448, P-521 and FFDHE groups, which Mozilla's profiles do
    not allow, and Python <= 3.13's set_ecdh_curve() sets one curve only. So we call
    SSL_CTX_set1_groups_list on the context's SSL_CTX through ctypes, after proving that the
    pointer we read really is that SSL_CTX. Any doubt raises: never a silent fallback.
    """
    if sys.implementation.name != "cpython":
        raise TlsConfigError("pinning TLS groups needs CPython")
    lib = _libssl()
    # A CPython PySSLContext is PyObject_HEAD followed by `SSL_CTX *ctx`.
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    get_options = lib.SSL_CTX_get_options
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    if not ptr or get_options(ptr) != ctx.options:
        raise TlsConfigError("cannot locate the SSL_CTX of this SSLContext")
    ctrl = lib.SSL_CTX_ctrl
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    if ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) != 1:
        raise TlsConfigError(f"OpenSSL refused the TLS group list {groups!r}")


def certificate_files(settings: TlsSettings) -> tuple[Path, Path]:
    """(cert, key) to serve: the configured pair, or the development one (made if missing)."""
    if settings.cert_file is not None and settings.key_file is not None:
        return settings.cert_file, settings.key_file
    _ca, cert, key = ensure_dev_certificate(settings.dev_dir)
    return cert, key


def build_ssl_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server SSLContext for the settings' Mozilla profile."""
    cert, key = certificate_files(settings)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if settings.profile == "modern":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    # No compression (CRIME), no renegotiation (client-initiated DoS), no stateless tickets:
    # Python cannot rotate ticket keys, which would undo forward secrecy for the process's
    # lifetime (Mozilla: "ssl_session_tickets off"). Mozilla lets the client pick the cipher.
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(cert, key)
    _pin_groups(ctx, GROUPS)
    return ctx


def client_ssl_context(ca_file: Path | str | None = None) -> ssl.SSLContext:
    """A verifying client context (TLS 1.2+) that also trusts `ca_file`, e.g. the dev CA."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --- serving ---------------------------------------------------------------------------------

# Options that would replace our context or fork the server (the context cannot be pickled).
_REFUSED_OPTIONS = ("ssl_keyfile", "ssl_certfile", "ssl_context_factory", "workers", "reload")


def make_server(
    app: Any,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    log_config: dict[str, Any] | str | None = None,
    **uvicorn_kwargs: Any,
) -> Any:
    """A `uvicorn.Server` that speaks HTTPS with `ssl_context` only; there is no plaintext
    listener. Extra keyword arguments go to `uvicorn.Config` (no ssl_*/workers/reload)."""
    import uvicorn  # imported late: `import sealflow.tls` stays light for the CLI

    if not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError("ssl_context must be an ssl.SSLContext: sealflow serves HTTPS only")
    refused = sorted(k for k in uvicorn_kwargs if k in _REFUSED_OPTIONS or k.startswith("ssl_"))
    if refused:
        raise TypeError(f"uvicorn options not allowed with sealflow's TLS context: {refused}")
    uvicorn_kwargs.setdefault("server_header", False)  # don't advertise the server software

    def factory(config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        alpn = getattr(config.http_protocol_class, "alpn_protocols", None)
        if alpn:  # as uvicorn's own factory does (only for HTTP/2-capable protocols)
            ssl_context.set_alpn_protocols(alpn)
        return ssl_context

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config,
        ssl_context_factory=factory,
        **uvicorn_kwargs,
    )
    config.load()
    if config.ssl is not ssl_context:  # a uvicorn that ignored the factory would serve plaintext
        raise TlsConfigError("uvicorn did not take sealflow's SSLContext; refusing to serve")
    return uvicorn.Server(config)


def serve(
    app: Any,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    sockets: list[Any] | None = None,
    **kwargs: Any,
) -> None:
    """Serve `app` over HTTPS until a signal stops it (blocking)."""
    make_server(app, host, port, ssl_context, **kwargs).run(sockets=sockets)


async def serve_async(
    app: Any,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    sockets: list[Any] | None = None,
    **kwargs: Any,
) -> None:
    """Serve `app` over HTTPS inside a running event loop."""
    await make_server(app, host, port, ssl_context, **kwargs).serve(sockets=sockets)
