"""Secret files of the data directory (sealflow.secret_files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealflow.secret_files import SecretFileError, load_or_create_secret


def test_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "x.key"
    first = load_or_create_secret(path, 32)
    assert len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert load_or_create_secret(path, 32) == first


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.key"
    load_or_create_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        load_or_create_secret(path)


def test_a_damaged_file_is_refused_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "x.key"
    path.write_text("not hex at all")
    os.chmod(path, 0o600)
    with pytest.raises(SecretFileError) as err:
        load_or_create_secret(path)
    assert "not hex" not in str(err.value)
