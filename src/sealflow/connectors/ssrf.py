"""The SSRF guard (SPEC T2): the only way connectors reach the network.

The guard sits where a TCP connection is opened, not where a URL is parsed: httpcore hands
each new connection's host name to `_GuardedBackend.connect_tcp`, which resolves it once,
refuses it if ANY resolved address is private, loopback, link-local (cloud metadata),
CGNAT, multicast or reserved (IPv4 inside IPv6 judged as IPv4), unless the operator listed
it in SEALFLOW_SSRF_ALLOW, and then connects to the vetted address itself. So:

* DNS rebinding cannot slip a second answer in: the address checked is the one dialled.
* TLS keeps the real host name for SNI and certificate verification, and the connection
  pool stays keyed by host name, so a connection verified for one name never serves another.
* Every redirect hop is a new request through this transport, hence re-checked.

`SSRFGuardTransport` is an httpx transport (model: httpx/_transports/default.py) over an
httpcore pool with that backend; `build_client` is what the engine hands to connectors.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import anyio
import certifi
import httpcore
import httpx

from sealflow.core.errors import ConnectorError

ALLOW_SETTING = "SEALFLOW_SSRF_ALLOW"
MAX_REDIRECTS = 5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in pairs)


# Named so the refusal can say which range matched. Anything else that Python does not call
# global is refused too (the catch-all in `blocked_range`).
_BLOCKED_V4 = _nets(
    ("0.0.0.0/8", "'this network'"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, cloud metadata"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_BLOCKED_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique-local, cloud metadata"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_allow_list(allow: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse the operator's CIDRs once; a typo fails at start-up, not at the first call."""
    nets = []
    for item in allow:
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{ALLOW_SETTING}: {item!r} is not an IP network ({exc})") from exc
    return tuple(nets)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any: those
    reach the IPv4 host, so they are judged as it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def normalise(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_v4(ip)
        if v4 is not None:
            return v4
        if ip.scope_id:  # fe80::1%eth0: the scope does not change what the address is
            return ipaddress.IPv6Address(str(ip).split("%")[0])
    return ip


def blocked_range(ip: IPAddress) -> tuple[str, str] | None:
    """(cidr, label) of the blocked range `ip` falls in, or None when it is public."""
    ip = normalise(ip)
    table = _BLOCKED_V4 if isinstance(ip, ipaddress.IPv4Address) else _BLOCKED_V6
    for net, label in table:
        if ip in net:
            return str(net), label
    if not ip.is_global:
        return str(ip), "reserved, not globally routable"
    return None


class AddressPolicy:
    """Decides whether an address may be dialled. Options are checked once, here."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow = parse_allow_list(allow)

    def allowed(self, ip: IPAddress) -> bool:
        ips = {ip, normalise(ip)}
        return any(a in net for a in ips for net in self.allow if a.version == net.version)

    def check(self, host: str, ip: IPAddress) -> None:
        if self.allowed(ip):
            return
        blocked = blocked_range(ip)
        if blocked is None:
            return
        cidr, label = blocked
        single = f"{normalise(ip)}/{32 if normalise(ip).version == 4 else 128}"
        raise ConnectorError(
            f"Refused to connect to {host!r}: address {ip} is in {cidr} ({label}). The SSRF "
            "guard blocks private, loopback and cloud-metadata addresses; an operator can "
            f"allow a range by adding it to {ALLOW_SETTING} (e.g. {ALLOW_SETTING}={single}).",
            code="ssrf_blocked",
            retryable=False,
            details={"host": host, "address": str(ip), "blocked_range": cidr,
                     "setting": ALLOW_SETTING},
        )

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to, each vetted; refuses if any one is blocked (a
        name that also points inside is not trusted with its public answers either)."""
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
            addresses = []
            for info in infos:
                ip = ipaddress.ip_address(str(info[4][0]))
                if ip not in addresses:
                    addresses.append(ip)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: no address")
        for ip in addresses:
            self.check(host, ip)
        return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend: resolve + vet + dial the vetted address."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._policy.resolve(host, port)
                error: Exception = httpcore.ConnectError(f"cannot connect to {host!r}")
                for ip in addresses:  # each was vetted; try them in the resolver's order
                    try:
                        return await self._inner.connect_tcp(
                            str(ip), port, timeout=timeout, local_address=local_address,
                            socket_options=socket_options,
                        )
                    except httpcore.ConnectError as exc:
                        error = exc
                raise error
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host!r} timed out") from exc

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through the SSRF guard")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# Most specific first: httpx callers catch httpx exceptions, never httpcore ones.
_ERROR_MAP: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
)


@contextlib.contextmanager
def _map_errors() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError:
        raise
    except Exception as exc:
        for source, target in _ERROR_MAP:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _map_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _map_errors():
                await self._stream.aclose()


def build_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Certificates are always verified: public roots (certifi) plus the operator's extra
    bundle, never instead of them and never off."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class SSRFGuardTransport(httpx.AsyncBaseTransport):
    """An httpx transport that can only reach addresses the AddressPolicy accepts.

    `network_backend` is the dialler under the guard (default: httpcore's anyio backend);
    tests pass a recording one to prove a refused address is never dialled."""

    def __init__(
        self,
        *,
        allow: Iterable[str] = (),
        ca_bundle: str | None = None,
        limits: httpx.Limits | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = AddressPolicy(allow)
        dialler = network_backend or httpcore.AnyIOBackend()
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=build_ssl_context(ca_bundle),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=_GuardedBackend(self.policy, dialler),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise ConnectorError(
                f"Refused URL scheme {request.url.scheme!r}: only http and https are allowed",
                code="unsupported_scheme",
            )
        assert isinstance(request.stream, httpx.AsyncByteStream)
        # The certificate must match the host actually requested: no caller-chosen SNI.
        extensions = {k: v for k, v in request.extensions.items() if k != "sni_hostname"}
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=extensions,
        )
        with _map_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def build_client(
    *, allow: Sequence[str], ca_bundle: str | None, timeout: float
) -> httpx.AsyncClient:
    """The outbound client the engine gives connectors (ctx.http_client()). Redirects are
    followed (at most MAX_REDIRECTS), each hop through the guard; environment proxies and
    .netrc are ignored so nothing routes around it."""
    return httpx.AsyncClient(
        transport=SSRFGuardTransport(allow=allow, ca_bundle=ca_bundle),
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
        headers={"User-Agent": "sealflow"},
    )
