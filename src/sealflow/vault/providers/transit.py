"""A key provider over HashiCorp Vault's Transit secrets engine (OpenBao serves the same API).

The KEK is a named transit key (type aes256-gcm96); its versions are transit's key versions.
`encrypt`/`decrypt` call `POST /v1/<mount>/encrypt|decrypt/<key>` with the aad sent as
`associated_data`; the ciphertext is transit's own `vault:v<N>:...` string (as ASCII bytes),
so it names the version that made it. `rotate()` calls `/keys/<key>/rotate`; `retire(v)`
raises the key's `min_decryption_version` to v + 1, after which transit refuses to decrypt
anything older.

Failures: a network error, a timeout, 429 or a 5xx (a sealed or standby server) raise
`KeyProviderUnavailable` (retryable); 401/403 and other refusals raise `KeyProviderError`; a
ciphertext that transit will not decrypt raises `DecryptionFailed`.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx

from sealflow.core.secrets import Secret
from sealflow.vault.errors import (
    DecryptionFailed,
    KeyProviderError,
    KeyProviderUnavailable,
    KeyVersionError,
)


class TransitProvider:
    """A KEK held by a Vault/OpenBao transit engine. Nothing is sent before the first use."""

    def __init__(
        self,
        address: str,
        token: Secret,
        key_name: str,
        *,
        mount: str = "transit",
        timeout_s: float = 10.0,
        verify: bool | str = True,
        namespace: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.key_name = key_name
        self.mount = mount.strip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._verify = verify
        self._namespace = namespace
        self._transport = transport
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    # -- KeyProvider -----------------------------------------------------------------------
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        data = self._call(
            "POST",
            f"encrypt/{self.key_name}",
            {"plaintext": _b64(plaintext), "associated_data": _b64(aad)},
            what="encrypt",
        )
        return str(data["ciphertext"]).encode("ascii")

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        if not ciphertext.startswith(b"vault:v"):
            raise DecryptionFailed("the wrapped key is not a transit ciphertext")
        body = {"ciphertext": ciphertext.decode("ascii", "replace"), "associated_data": _b64(aad)}
        data = self._call("POST", f"decrypt/{self.key_name}", body, what="decrypt")
        return base64.b64decode(str(data["plaintext"]))

    @property
    def version(self) -> int:
        return int(self._key_info()["latest_version"])

    def rotate(self) -> int:
        self._call("POST", f"keys/{self.key_name}/rotate", {}, what="rotate")
        return self.version

    def retire(self, version: int) -> None:
        info = self._key_info()
        current = int(info["latest_version"])
        if not 1 <= version < current:
            raise KeyVersionError(
                f"cannot retire version {version} of transit key {self.key_name!r}: versions "
                f"1 to {current - 1} can be retired (current is {current})"
            )
        if int(info["min_decryption_version"]) <= version:
            body = {"min_decryption_version": version + 1}
            self._call("POST", f"keys/{self.key_name}/config", body, what="retire")

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": "transit",
            "address": self.address,
            "mount": self.mount,
            "key": self.key_name,
        }
        try:
            info = self._key_info()
        except (KeyProviderUnavailable, KeyProviderError) as exc:
            return {**out, "available": False, "error": exc.code}
        return {
            **out,
            "available": True,
            "version": int(info["latest_version"]),
            "min_decryption_version": int(info["min_decryption_version"]),
        }

    # -- setting up ------------------------------------------------------------------------
    def ensure_key(self) -> int:
        """Creates the transit key (aes256-gcm96) unless it exists; returns its version.
        Idempotent: transit answers a create of an existing key with success."""
        body = {"type": "aes256-gcm96"}
        self._call("POST", f"keys/{self.key_name}", body, what="create key", ok_empty=True)
        return self.version

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- HTTP ------------------------------------------------------------------------------
    def _key_info(self) -> dict[str, Any]:
        return self._call("GET", f"keys/{self.key_name}", None, what="read key")

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                headers = {"X-Vault-Token": self._token.reveal()}
                if self._namespace:
                    headers["X-Vault-Namespace"] = self._namespace
                self._client = httpx.Client(
                    base_url=f"{self.address}/v1/{self.mount}/",
                    headers=headers,
                    timeout=self._timeout_s,
                    verify=self._verify,
                    transport=self._transport,
                )
            return self._client

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        what: str,
        ok_empty: bool = False,
    ) -> dict[str, Any]:
        where = f"transit {what} at {self.address} (key {self.key_name!r})"
        try:
            response = self._http().request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise KeyProviderUnavailable(f"{where} failed: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise KeyProviderUnavailable(f"{where} answered {status}; retry later")
        if what == "decrypt" and status == 400:
            raise DecryptionFailed()
        if status >= 400:
            # Server errors name the problem ("permission denied", "encryption key not
            # found"); they are read only for key management, never for encrypt/decrypt.
            detail = "" if what in ("encrypt", "decrypt") else f": {_errors(response)}"
            if status == 404:
                detail += f" (is transit mounted at {self.mount!r} and the key created?)"
            raise KeyProviderError(f"{where} was refused with {status}{detail}")
        if not response.content and ok_empty:
            return {}
        data = response.json().get("data")
        if not isinstance(data, dict):
            if ok_empty:
                return {}
            raise KeyProviderError(f"{where} answered without data")
        return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors")
    except ValueError:
        return "no detail"
    if isinstance(errors, list) and errors:
        return "; ".join(str(e)[:200] for e in errors)
    return "no detail"
