"""The local key-file provider on real files: mode 0600, refusal of readable files,
rotation, retirement, and changes made by another process being seen."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sealflow.vault.errors import (
    DecryptionFailed,
    KeyFileInsecure,
    KeyProviderError,
    KeyVersionError,
)
from sealflow.vault.providers.base import KeyProvider
from sealflow.vault.providers.local_file import LocalFileProvider


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_run_creates_a_0600_file_holding_a_tink_keyset(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "us.kek.json"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        provider = LocalFileProvider(path)
    finally:
        os.umask(old_umask)
    assert isinstance(provider, KeyProvider)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    data = json.loads(path.read_text())
    assert len(data["key"]) == 1 and data["primaryKeyId"] == data["key"][0]["keyId"]
    assert provider.version == 1
    ct = provider.encrypt(b"keyset", b"aad")
    assert provider.decrypt(ct, b"aad") == b"keyset"


def test_an_existing_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "us.kek.json"
    ct = LocalFileProvider(path).encrypt(b"x", b"")
    assert LocalFileProvider(path).decrypt(ct, b"") == b"x"


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_file_group_or_others_can_access_is_refused(tmp_path: Path, bad_mode: int) -> None:
    path = tmp_path / "us.kek.json"
    LocalFileProvider(path)
    path.chmod(bad_mode)
    with pytest.raises(KeyFileInsecure) as err:
        LocalFileProvider(path)
    assert str(path) in err.value.message
    assert f"{bad_mode:04o}" in err.value.message
    assert err.value.retryable is False


def test_a_running_provider_refuses_once_the_file_is_opened_up(tmp_path: Path) -> None:
    path = tmp_path / "us.kek.json"
    provider = LocalFileProvider(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileInsecure):
        provider.encrypt(b"x", b"")


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "us.kek.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{}")
    os.close(fd)
    with pytest.raises(KeyProviderError, match="valid Tink keyset"):
        LocalFileProvider(path)


def test_rotation_adds_a_version_and_old_versions_still_decrypt(tmp_path: Path) -> None:
    provider = LocalFileProvider(tmp_path / "k.json")
    v1 = provider.encrypt(b"one", b"a")
    assert provider.rotate() == 2
    assert provider.version == 2
    v2 = provider.encrypt(b"two", b"a")
    assert provider.decrypt(v1, b"a") == b"one"
    assert provider.decrypt(v2, b"a") == b"two"
    assert mode(tmp_path / "k.json") == 0o600
    assert not (tmp_path / "k.json.new").exists()


def test_retiring_a_version_stops_it_and_every_older_one(tmp_path: Path) -> None:
    provider = LocalFileProvider(tmp_path / "k.json")
    v1 = provider.encrypt(b"one", b"")
    provider.rotate()
    v2 = provider.encrypt(b"two", b"")
    provider.rotate()
    v3 = provider.encrypt(b"three", b"")
    provider.retire(2)
    for ct in (v1, v2):
        with pytest.raises(DecryptionFailed):
            provider.decrypt(ct, b"")
    assert provider.decrypt(v3, b"") == b"three"
    provider.retire(1)  # already retired: a no-op
    assert provider.describe() == {
        "kind": "local_file",
        "path": str(tmp_path / "k.json"),
        "version": 3,
        "versions": 3,
        "retired": [1, 2],
    }


@pytest.mark.parametrize("version", [0, 2, 3, -1])
def test_only_past_versions_can_be_retired(tmp_path: Path, version: int) -> None:
    provider = LocalFileProvider(tmp_path / "k.json")
    provider.rotate()
    with pytest.raises(KeyVersionError, match="current is 2"):
        provider.retire(version)


def test_changes_made_by_another_process_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    server, cli = LocalFileProvider(path), LocalFileProvider(path)
    old = server.encrypt(b"old", b"")
    cli.rotate()
    new = cli.encrypt(b"new", b"")
    assert server.version == 2
    assert server.decrypt(new, b"") == b"new"
    cli.retire(1)
    with pytest.raises(DecryptionFailed):
        server.decrypt(old, b"")
