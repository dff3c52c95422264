"""A real OAuth 2.0 / OpenID Connect authorization server for tests: npm `oidc-provider`
(tests/support/oidc/server.mjs) on Node.js, served over HTTPS on 127.0.0.1 at a port the OS
picks, with a CA made per run. Never a hand-written fake.

Use the session fixture `oauth_server`: either register this module once in the root
tests/conftest.py (`pytest_plugins = ["tests.support.oauth_server"]`), or bind it in the test
module (a plain `from ... import oauth_server` is flagged by ruff F811 in every test taking it):

    from tests.support import oauth_server as oauth_support
    from tests.support.oauth_server import OAuthServer

    oauth_server = oauth_support.oauth_server

    async def test_x(oauth_server: OAuthServer) -> None:
        client = oauth_server.code_client
        config = oauth_server.config(client)            # an OAuthClientConfig for it
        auth = new_authorization(config, client.redirect_uri)
        code = oauth_server.authorize_code(auth.url)    # login + consent, no browser
        async with oauth_server.http() as http:         # an httpx client trusting ca_file
            tokens = await exchange_code(config, Secret(client.client_secret), code=code,
                                         code_verifier=auth.code_verifier,
                                         redirect_uri=client.redirect_uri, http=http, clock=c)

What it offers (see OAuthServer):
* `issuer`, `authorize_url`, `token_url`, `revocation_url`, `ca_file` (PEM of the CA that
  signed the server's certificate: give it to `sealflow serve` as
  SEALFLOW_OUTBOUND_CA_BUNDLE, with SEALFLOW_SSRF_ALLOW=127.0.0.1/32).
* Clients, each an OAuthTestClient(client_id, client_secret, redirect_uri, scopes,
  auth_method), and `config(client, **overrides)` the matching OAuthClientConfig
  (`code_config()`, `service_config()` for the two below):
  `code_client` (authorization_code + refresh_token, client_secret_basic, PKCE required,
  refresh tokens rotated on every use), `public_client` (the same, auth method none),
  `service_client` (client_credentials, client_secret_post; ask for `resource` =
  `oauth_server.resource` to get a JWT whose audience is that resource).
  `register_client(redirect_uri)` adds a code client at run time, e.g. for an e2e server
  whose callback URL names a port learnt after this fixture started.
* `authorize(url, login_hint=None)` follows the authorization request through the
  provider's (automatic) login and consent and returns the URL it redirects to (code,
  state and iss in its query); `authorize_code(url)` returns just the code.
  login_hint="deny" makes the user refuse (the redirect carries error=access_denied).
* `revoke(token, client)` revokes a token at the revocation endpoint (a revoked refresh
  token makes the next refresh fail with invalid_grant); `revoke_grants(client)` revokes
  every grant of a client without naming a token (for tokens sealed inside sealflow);
  `introspect(token, client)`.

Access tokens live `access_token_ttl` seconds (60 for the fixture; `start_oauth_server` takes
another). The fixture skips only when `node` is absent; if tests/support/oidc/node_modules is
missing or older than the lockfile it runs `npm ci` there, and a failing install fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from sealflow.dev_certificate import ensure_dev_certificate
from sealflow.oauth import OAuthClientConfig
from sealflow.tls import client_ssl_context

OIDC_DIR = Path(__file__).parent / "oidc"
RESOURCE = "https://api.sealflow.test"
RESOURCE_SCOPE = "workflows:read workflows:write"
# Nothing listens there: authorize() stops at the redirect and reads the code from it.
REDIRECT_URI = "https://app.sealflow.test/oauth/callback"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class OAuthTestClient:
    client_id: str
    client_secret: str | None
    redirect_uri: str | None
    scopes: tuple[str, ...]
    auth_method: str


class OAuthServer:
    def __init__(
        self,
        issuer: str,
        metadata: dict[str, Any],
        ca_file: Path,
        clients: dict[str, OAuthTestClient],
        access_token_ttl: int,
        admin_key: str,
        proc: subprocess.Popen[bytes],
        log_path: Path,
    ) -> None:
        self.issuer = issuer
        self.metadata = metadata
        self.ca_file = ca_file
        self.clients = clients
        self.access_token_ttl = access_token_ttl
        self._admin_key = admin_key
        self.resource = RESOURCE
        self.proc = proc
        self.log_path = log_path

    # --- where things are ------------------------------------------------------------------
    @property
    def authorize_url(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def token_url(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def revocation_url(self) -> str:
        return str(self.metadata["revocation_endpoint"])

    @property
    def code_client(self) -> OAuthTestClient:
        return self.clients["code"]

    @property
    def public_client(self) -> OAuthTestClient:
        return self.clients["public"]

    @property
    def service_client(self) -> OAuthTestClient:
        return self.clients["service"]

    def ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.ca_file)

    def http(self, **kw: Any) -> httpx.AsyncClient:
        """An async client that trusts this server's CA (and nothing else)."""
        return httpx.AsyncClient(verify=self.ssl_context(), timeout=kw.pop("timeout", 10), **kw)

    def config(self, client: OAuthTestClient, **overrides: Any) -> OAuthClientConfig:
        values: dict[str, Any] = {
            "token_url": self.token_url,
            "client_id": client.client_id,
            "authorize_url": self.authorize_url if client.redirect_uri else None,
            "scopes": client.scopes,
            "auth_method": client.auth_method,
        }
        return OAuthClientConfig(**(values | overrides))

    def code_config(self, **overrides: Any) -> OAuthClientConfig:
        return self.config(self.code_client, **overrides)

    def service_config(self, **overrides: Any) -> OAuthClientConfig:
        return self.config(self.service_client, **overrides)

    # --- acting as the user and the operator -----------------------------------------------
    def authorize(self, url: str, *, login_hint: str | None = None) -> str:
        """Follow an authorization request through login and consent; return the URL the
        provider finally redirects to (outside the issuer), with code or error in it."""
        if login_hint is not None:
            url += ("&" if "?" in url else "?") + urlencode({"login_hint": login_hint})
        with httpx.Client(verify=self.ssl_context(), timeout=10) as browser:
            for _ in range(10):
                response = browser.get(url)
                if response.status_code not in (302, 303):
                    raise AssertionError(
                        f"authorize stopped at HTTP {response.status_code} for {url}: "
                        f"{response.text[-1500:]}"
                    )
                url = urljoin(url, response.headers["location"])
                if not url.startswith(self.issuer + "/"):
                    return url
        raise AssertionError("authorize: too many redirects")

    def authorize_code(self, url: str) -> str:
        query = parse_qs(urlsplit(self.authorize(url)).query)
        if "code" not in query:
            raise AssertionError(f"no code in the redirect: {query}")
        return query["code"][0]

    def _client_post(self, url: str, client: OAuthTestClient, data: dict[str, str]) -> Any:
        auth = (client.client_id, client.client_secret or "")
        with httpx.Client(verify=self.ssl_context(), timeout=10) as c:
            response = c.post(url, data=data, auth=auth)
        response.raise_for_status()
        return response.json() if response.content else None

    def revoke(self, token: str, client: OAuthTestClient | None = None) -> None:
        """Revoke an access or refresh token (RFC 7009) as `client` (default code_client)."""
        self._client_post(self.revocation_url, client or self.code_client, {"token": token})

    def revoke_grants(self, client: OAuthTestClient) -> int:
        """Revoke every grant `client` holds (tokens included); returns how many."""
        with httpx.Client(verify=self.ssl_context(), timeout=10) as c:
            response = c.post(
                f"{self.issuer}/test/revoke-grants",
                params={"client_id": client.client_id},
                headers={"Authorization": f"Bearer {self._admin_key}"},
            )
        response.raise_for_status()
        return int(response.json()["revoked"])

    def introspect(self, token: str, client: OAuthTestClient | None = None) -> dict[str, Any]:
        url = str(self.metadata["introspection_endpoint"])
        result: dict[str, Any] = self._client_post(url, client or self.code_client,
                                                   {"token": token})  # fmt: skip
        return result

    def register_client(
        self, redirect_uri: str, *, auth_method: str = "client_secret_basic"
    ) -> OAuthTestClient:
        """A new authorization-code client for `redirect_uri` (dynamic registration)."""
        body = {
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": auth_method,
        }
        with httpx.Client(verify=self.ssl_context(), timeout=10) as c:
            response = c.post(str(self.metadata["registration_endpoint"]), json=body)
        if response.status_code != 201:
            raise AssertionError(f"registration refused: {response.text[-1500:]}")
        made = response.json()
        return OAuthTestClient(
            made["client_id"], made.get("client_secret"), redirect_uri, ("openid",), auth_method
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _clients() -> dict[str, OAuthTestClient]:
    def secret() -> str:
        return secrets.token_urlsafe(32)

    return {
        "code": OAuthTestClient(
            "sealflow-code", secret(), REDIRECT_URI, ("openid",), "client_secret_basic"
        ),
        "public": OAuthTestClient("sealflow-public", None, REDIRECT_URI, ("openid",), "none"),
        "service": OAuthTestClient(
            "sealflow-service",
            secret(),
            None,
            tuple(RESOURCE_SCOPE.split()),
            "client_secret_post",
        ),
    }


def _provider_metadata(clients: dict[str, OAuthTestClient]) -> list[dict[str, Any]]:
    out = []
    for client in clients.values():
        meta: dict[str, Any] = {
            "client_id": client.client_id,
            "token_endpoint_auth_method": client.auth_method,
        }
        if client.client_secret:
            meta["client_secret"] = client.client_secret
        if client.redirect_uri:
            meta |= {
                "redirect_uris": [client.redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }
        else:
            meta |= {"redirect_uris": [], "grant_types": ["client_credentials"],
                     "response_types": []}  # fmt: skip
        out.append(meta)
    return out


def ensure_node_modules() -> None:
    """`npm ci` in tests/support/oidc unless its node_modules matches the lockfile (the
    Makefile normally did it already). Locked, so parallel test workers install once."""
    lock, installed = OIDC_DIR / "package-lock.json", OIDC_DIR / "node_modules/.package-lock.json"
    # The lock lives outside the tree: npm ci deletes node_modules, and the tree stays clean.
    tag = hashlib.sha256(str(OIDC_DIR).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"sealflow-oidc-{tag}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("node is installed but npm is not: cannot install oidc-provider")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=OIDC_DIR, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"npm ci in {OIDC_DIR} failed:\n{done.stdout}\n{done.stderr}")


def start_oauth_server(directory: Path, *, access_token_ttl: int = 60) -> OAuthServer:
    """Start a provider whose files (TLS, log) live in `directory`; stop() it when done."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the OAuth tests need it to run oidc-provider")
    ensure_node_modules()
    ca_file, cert_file, key_file = ensure_dev_certificate(
        directory / "tls", hostnames=("localhost",), ips=("127.0.0.1",)
    )
    clients, admin_key = _clients(), secrets.token_urlsafe(24)
    options = {
        "adminKey": admin_key,
        "certFile": str(cert_file),
        "keyFile": str(key_file),
        "clients": _provider_metadata(clients),
        "accessTokenTTL": access_token_ttl,
        "resource": {"url": RESOURCE, "scope": RESOURCE_SCOPE},
    }
    log_path = directory / "oidc-provider.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [node, str(OIDC_DIR / "server.mjs"), json.dumps(options)],
            cwd=OIDC_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        issuer = _wait_ready(proc, log_path)
        with httpx.Client(verify=client_ssl_context(ca_file), timeout=10) as c:
            metadata = c.get(f"{issuer}/.well-known/openid-configuration").raise_for_status()
        return OAuthServer(
            issuer, metadata.json(), ca_file, clients, access_token_ttl, admin_key, proc, log_path
        )
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
        raise


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return str(json.loads(line[6:])["issuer"])
        if proc.poll() is not None:
            raise RuntimeError(f"oidc-provider exited:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.02)
    raise RuntimeError(f"oidc-provider did not start:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def oauth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthServer]:
    """One real oidc-provider for the whole test session (see the module docstring)."""
    server = start_oauth_server(tmp_path_factory.mktemp("oauth"))
    try:
        yield server
    finally:
        server.stop()
