"""The development CA and leaf certificate made on first run when no certificate is
configured (T1): ECDSA P-256, keys written 0600 and replaced atomically under a lock, the
leaf renewed before it expires. Its shape is what sslyze's Mozilla check verifies."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Clock = Callable[[], dt.datetime]

CA_CERT_NAME, CA_KEY_NAME = "dev-ca.pem", "dev-ca.key"
LEAF_CERT_NAME, LEAF_KEY_NAME = "dev-cert.pem", "dev-cert.key"


class TlsConfigError(RuntimeError):
    """The TLS configuration cannot be applied safely; the server must not start."""


# Mozilla 5.7 caps "modern" certificates at 90 days (366 for intermediate); sslyze checks it.
LEAF_LIFETIME = dt.timedelta(days=90)
LEAF_RENEW_BEFORE = dt.timedelta(days=30)
CA_LIFETIME = dt.timedelta(days=3650)
# Tolerate a client clock slightly behind ours without stretching the lifespan past 90 days.
_BACKDATE = dt.timedelta(hours=1)


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
