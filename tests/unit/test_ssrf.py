"""T2: the SSRF guard refuses private, loopback and metadata addresses before dialling, dials
the address it vetted, and re-checks every redirect hop. Only 127.0.0.1 is ever contacted:
the recording dialler fails the test if anything else is dialled."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from sealflow.connectors import ssrf
from sealflow.connectors.ssrf import (
    ALLOW_SETTING,
    AddressPolicy,
    SSRFGuardTransport,
    blocked_range,
    build_client,
    parse_allow_list,
)
from sealflow.core.errors import ConnectorError


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """The dialler under the guard: records every dial, refuses anything not loopback."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None,
                          socket_options=None):
        self.dialled.append((host, port))
        assert ipaddress.ip_address(host).is_loopback, f"test tried to dial {host}"
        return await self._inner.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/hop/"):
            n = int(self.path.rsplit("/", 1)[1])
            target = f"/hop/{n - 1}" if n > 1 else "/echo"
            return self._send(302, b"", {"Location": target})
        if self.path == "/to-metadata":
            return self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        if self.path == "/to-private":
            return self._send(302, b"", {"Location": "http://10.0.0.1/"})
        body = json.dumps({"host": self.headers.get("Host"), "path": self.path}).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _client(allow: list[str], backend: RecordingBackend) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=SSRFGuardTransport(allow=allow, network_backend=backend),
        follow_redirects=True,
        max_redirects=ssrf.MAX_REDIRECTS,
        timeout=5,
    )


@pytest.mark.parametrize(
    ("address", "cidr"),
    [
        ("169.254.169.254", "169.254.0.0/16"),
        ("10.0.0.1", "10.0.0.0/8"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("::1", "::1/128"),
        ("fd00:ec2::254", "fc00::/7"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("172.16.5.4", "172.16.0.0/12"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("224.0.0.1", "224.0.0.0/4"),
        ("255.255.255.255", "240.0.0.0/4"),
        ("fe80::1", "fe80::/10"),
        ("ff02::1", "ff00::/8"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("::ffff:169.254.169.254", "169.254.0.0/16"),
        ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),  # NAT64 of the metadata address
        ("2002:a00:1::", "10.0.0.0/8"),  # 6to4 of 10.0.0.1
    ],
)
def test_blocked_ranges(address: str, cidr: str) -> None:
    found = blocked_range(ipaddress.ip_address(address))
    assert found is not None and found[0] == cidr


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_range(ipaddress.ip_address(address)) is None


def test_allow_list_and_its_errors() -> None:
    policy = AddressPolicy(["127.0.0.1/32", "10.1.0.0/16"])
    assert policy.allowed(ipaddress.ip_address("127.0.0.1"))
    assert policy.allowed(ipaddress.ip_address("::ffff:127.0.0.1"))  # same host
    assert policy.allowed(ipaddress.ip_address("10.1.2.3"))
    assert not policy.allowed(ipaddress.ip_address("127.0.0.2"))
    assert not policy.allowed(ipaddress.ip_address("::1"))
    with pytest.raises(ValueError, match=ALLOW_SETTING):
        parse_allow_list(["not-a-cidr"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "cidr"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),
        ("http://10.0.0.1/", "10.0.0.0/8"),
        ("http://127.0.0.1:9/", "127.0.0.0/8"),
        ("http://[::1]:9/", "::1/128"),
        ("http://localhost:9/", "127.0.0.0/8"),  # a name resolving to loopback
        ("http://[::ffff:127.0.0.1]:9/", "127.0.0.0/8"),
        ("http://2130706433:9/", "127.0.0.0/8"),  # 127.0.0.1 written as one number
        ("https://[fd00:ec2::254]/", "fc00::/7"),
    ],
)
async def test_refused_before_any_connection(url: str, cidr: str) -> None:
    backend = RecordingBackend()
    async with _client([], backend) as client:
        with pytest.raises(ConnectorError) as caught:
            await client.get(url)
    error = caught.value
    assert error.code == "ssrf_blocked" and error.retryable is False
    assert cidr in error.message and ALLOW_SETTING in error.message
    assert httpx.URL(url).host in error.message
    assert error.details["blocked_range"] == cidr
    assert backend.dialled == []


@pytest.mark.anyio
async def test_allow_listed_loopback_is_reached(server: int) -> None:
    backend = RecordingBackend()
    async with _client(["127.0.0.1/32"], backend) as client:
        response = await client.get(f"http://127.0.0.1:{server}/x")
    assert response.status_code == 200
    assert backend.dialled == [("127.0.0.1", server)]


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.mark.anyio
async def test_allow_listed_ipv6_loopback_is_reached() -> None:
    try:
        httpd = _V6Server(("::1", 0), _Handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    port = httpd.server_address[1]
    try:
        backend = RecordingBackend()
        async with _client(["::1/128"], backend) as client:
            response = await client.get(f"http://[::1]:{port}/six")
        assert response.json() == {"host": f"[::1]:{port}", "path": "/six"}
        assert backend.dialled == [("::1", port)]
        async with _client(["127.0.0.1/32"], RecordingBackend()) as client:
            with pytest.raises(ConnectorError, match=r"::1/128"):
                await client.get(f"http://[::1]:{port}/six")
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.anyio
async def test_name_is_dialled_by_vetted_address_and_keeps_host(server: int) -> None:
    backend = RecordingBackend()
    async with _client(["127.0.0.0/8", "::1/128"], backend) as client:
        response = await client.get(f"http://localhost:{server}/x")
    assert response.json() == {"host": f"localhost:{server}", "path": "/x"}
    # The dialler got the address the guard checked, never the name to resolve again.
    assert backend.dialled and all(ipaddress.ip_address(h) for h, _ in backend.dialled)


@pytest.mark.anyio
async def test_one_private_answer_refuses_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_getaddrinfo(host, port, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(ssrf.anyio, "getaddrinfo", fake_getaddrinfo)
    backend = RecordingBackend()
    async with _client([], backend) as client:
        with pytest.raises(ConnectorError, match=r"10\.0\.0\.7"):
            await client.get("http://rebind.example.test/")
    assert backend.dialled == []


@pytest.mark.anyio
async def test_unresolvable_name_is_a_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_getaddrinfo(host, port, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(ssrf.anyio, "getaddrinfo", fake_getaddrinfo)
    async with _client([], RecordingBackend()) as client:
        with pytest.raises(httpx.ConnectError, match="cannot resolve"):
            await client.get("http://nowhere.example.test/")


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/to-metadata", "/to-private"])
async def test_every_redirect_hop_is_checked(server: int, path: str) -> None:
    backend = RecordingBackend()
    async with _client(["127.0.0.1/32"], backend) as client:
        with pytest.raises(ConnectorError) as caught:
            await client.get(f"http://127.0.0.1:{server}{path}")
    assert caught.value.code == "ssrf_blocked"
    assert backend.dialled == [("127.0.0.1", server)]


@pytest.mark.anyio
async def test_redirects_are_bounded(server: int) -> None:
    async with build_client(allow=["127.0.0.1/32"], ca_bundle=None, timeout=5) as client:
        ok = await client.get(f"http://127.0.0.1:{server}/hop/{ssrf.MAX_REDIRECTS}")
        assert ok.status_code == 200 and len(ok.history) == ssrf.MAX_REDIRECTS
        with pytest.raises(httpx.TooManyRedirects):
            await client.get(f"http://127.0.0.1:{server}/hop/{ssrf.MAX_REDIRECTS + 1}")


@pytest.mark.anyio
async def test_build_client_refuses_by_default_and_ignores_proxy_env(
    monkeypatch: pytest.MonkeyPatch, server: int
) -> None:
    # An environment proxy must not route around the guard.
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.0.0.1:3128")
    async with build_client(allow=[], ca_bundle=None, timeout=5) as client:
        with pytest.raises(ConnectorError, match=r"SSRF guard"):
            await client.get(f"http://127.0.0.1:{server}/")
    async with build_client(allow=["127.0.0.1/32"], ca_bundle=None, timeout=5) as client:
        assert (await client.get(f"http://127.0.0.1:{server}/")).status_code == 200


@pytest.mark.anyio
async def test_transport_refuses_other_schemes() -> None:
    transport = SSRFGuardTransport()
    with pytest.raises(ConnectorError) as caught:
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))
    assert caught.value.code == "unsupported_scheme"
    await transport.aclose()
