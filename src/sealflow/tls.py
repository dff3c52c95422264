"""TLS-only transport (SPEC T1): the server's `ssl.SSLContext` and the uvicorn launcher that
serves HTTPS and nothing else. The development certificate is dev_certificate.py's.

Profiles follow Mozilla's server-side TLS guidelines (5.7, the version sslyze checks):
"intermediate" is TLS 1.2+ with the Mozilla cipher list, "modern" is TLS 1.3 only. Both pin
the key-exchange groups to X25519, P-256 and P-384 (see `_pin_groups`).
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sealflow.dev_certificate import TlsConfigError as TlsConfigError
from sealflow.dev_certificate import ensure_dev_certificate as ensure_dev_certificate

Profile = Literal["intermediate", "modern"]

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
