from __future__ import annotations

from pathlib import Path

import pytest

from sealflow.checks import DeployWarning, deploy_checks
from sealflow.tls import TlsSettings


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    return d


@pytest.fixture
def own_cert(tmp_path: Path) -> TlsSettings:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.touch(mode=0o600)
    key.chmod(0o600)
    return TlsSettings(dev_dir=tmp_path / "tls", profile="modern", cert_file=cert, key_file=key)


def _ids(warnings: list[DeployWarning]) -> list[str]:
    return [w.id for w in warnings]


def test_safe_settings_report_nothing(own_cert: TlsSettings, data_dir: Path) -> None:
    assert deploy_checks(tls=own_cert, host="0.0.0.0", data_dir=data_dir, key_file_mode=0o600) == []


def test_dev_certificate_on_loopback_and_network(tmp_path: Path, data_dir: Path) -> None:
    tls = TlsSettings(dev_dir=tmp_path / "tls", profile="modern")
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        assert _ids(deploy_checks(tls=tls, host=host, data_dir=data_dir)) == ["sealflow.W001"]
    for host in ("0.0.0.0", "::", "10.0.0.5", "sealflow.example.com"):
        found = deploy_checks(tls=tls, host=host, data_dir=data_dir)
        assert _ids(found) == ["sealflow.W001", "sealflow.W002"]
        assert host in found[1].message


def test_data_directory_mode(own_cert: TlsSettings, data_dir: Path) -> None:
    data_dir.chmod(0o755)
    found = deploy_checks(tls=own_cert, host="127.0.0.1", data_dir=data_dir)
    assert _ids(found) == ["sealflow.W003"]
    assert "755" in found[0].message
    # A directory that does not exist yet is created by sealflow with 700: nothing to say.
    assert deploy_checks(tls=own_cert, host="127.0.0.1", data_dir=data_dir / "new") == []


def test_private_key_modes(own_cert: TlsSettings, data_dir: Path) -> None:
    found = deploy_checks(tls=own_cert, host="127.0.0.1", data_dir=data_dir, key_file_mode=0o640)
    assert _ids(found) == ["sealflow.W004"]
    assert own_cert.key_file is not None
    own_cert.key_file.chmod(0o644)
    found = deploy_checks(tls=own_cert, host="127.0.0.1", data_dir=data_dir)
    assert _ids(found) == ["sealflow.W004"]
    assert str(own_cert.key_file) in found[0].message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("169.254.169.254", ["sealflow.W005", "sealflow.W006"]),
        ("169.254.0.0/16", ["sealflow.W005", "sealflow.W006"]),
        ("fd00:ec2::254", ["sealflow.W005", "sealflow.W006"]),
        ("100.100.100.200/32", ["sealflow.W005", "sealflow.W006"]),
        ("0.0.0.0/0", ["sealflow.W005", "sealflow.W006"]),
        ("::/0", ["sealflow.W005", "sealflow.W006"]),
        ("10.0.0.0/8", ["sealflow.W006"]),
        ("10.1.2.3", ["sealflow.W006"]),
        ("127.0.0.1", ["sealflow.W006"]),
        ("192.168.1.0/24", ["sealflow.W006"]),
        ("fe80::1", ["sealflow.W006"]),
        ("203.0.113.7", []),
        ("api.partner.example", []),
    ],
)
def test_ssrf_allow_list(
    own_cert: TlsSettings, data_dir: Path, entry: str, expected: list[str]
) -> None:
    found = deploy_checks(tls=own_cert, host="127.0.0.1", data_dir=data_dir, ssrf_allow=[entry])
    assert _ids(found) == expected
    assert all(entry in w.message for w in found)


def test_hsts_off_and_intermediate_profile(tmp_path: Path, data_dir: Path) -> None:
    tls = TlsSettings(
        dev_dir=tmp_path,
        profile="intermediate",
        cert_file=tmp_path / "c.pem",
        key_file=tmp_path / "k.pem",
    )
    found = deploy_checks(tls=tls, host="127.0.0.1", data_dir=data_dir, hsts=False)
    assert _ids(found) == ["sealflow.W007", "sealflow.I001"]  # warnings before info
    assert [w.level for w in found] == ["warning", "info"]
    assert str(found[0]).startswith("sealflow.W007: ")
