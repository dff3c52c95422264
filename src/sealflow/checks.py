"""`sealflow check --deploy`: named warnings for unsafe deployment settings.

Modelled on Django's security checks: every finding has a stable id that docs, issues and
`--silence` lists can name. The function takes plain values so the CLI can pass its config.

sealflow.W001  The development certificate is in use (no tls cert_file/key_file configured).
sealflow.W002  The development certificate is served on a non-loopback address: clients on
               the network cannot trust it and will learn to click through warnings.
sealflow.W003  The data directory is accessible to group or others (mode & 0o077).
sealflow.W004  A private key file (TLS key, key-encryption key file) is accessible to group or
               others (mode & 0o077).
sealflow.W005  The SSRF allow-list includes a cloud metadata address (169.254.169.254,
               fd00:ec2::254, 100.100.100.200): connectors could read instance credentials.
sealflow.W006  The SSRF allow-list opens private, loopback, link-local, shared or unspecified
               ranges (e.g. 10.0.0.0/8, 127.0.0.0/8, 0.0.0.0/0) beyond what T2 allows.
sealflow.W007  HSTS is disabled.
sealflow.I001  (info) The TLS profile is "intermediate"; use "modern" (TLS 1.3 only) when all
               clients support it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sealflow.tls import TlsSettings

Level = Literal["warning", "info"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
)
# Ranges the SSRF guard (T2) blocks by default; allowing any part of them is worth a look.
_GUARDED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


@dataclass(frozen=True)
class DeployWarning:
    id: str
    message: str
    level: Level = "warning"

    def __str__(self) -> str:
        return f"{self.id}: {self.message}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a DNS name other than localhost: assume it is reachable


def _mode(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None


def _parse_networks(entries: Sequence[str]) -> list[tuple[str, IPNetwork]]:
    parsed = []
    for entry in entries:
        try:
            parsed.append((entry, ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            continue  # host names are not address ranges; the guard resolves them itself
    return parsed


def _overlaps(net: IPNetwork, others: Sequence[IPNetwork]) -> bool:
    return any(net.version == o.version and net.overlaps(o) for o in others)


def deploy_checks(
    *,
    tls: TlsSettings,
    host: str,
    data_dir: Path,
    key_file_mode: int | None = None,
    ssrf_allow: Sequence[str] = (),
    hsts: bool = True,
) -> list[DeployWarning]:
    """Findings for these settings: warnings, then info, each by id; empty when all is well.

    `key_file_mode` is the permission bits of the local key-encryption key file (None when a
    KMS or Vault holds the key). The data directory and the TLS key file are stat()-ed.
    """
    found: list[DeployWarning] = []
    if tls.uses_dev_certificate:
        found.append(
            DeployWarning(
                "sealflow.W001",
                "The development certificate is in use; set tls cert_file and key_file to a "
                "certificate from a CA your clients trust.",
            )
        )
        if not _is_loopback(host):
            found.append(
                DeployWarning(
                    "sealflow.W002",
                    f"Listening on {host}, a non-loopback address, with the development "
                    "certificate; clients elsewhere cannot verify it.",
                )
            )

    data_mode = _mode(data_dir)
    if data_mode is not None and data_mode & 0o077:
        found.append(
            DeployWarning(
                "sealflow.W003",
                f"Data directory {data_dir} has mode {data_mode:o}; make it 700.",
            )
        )

    loose_keys = []
    tls_key_mode = _mode(tls.key_file)
    if tls_key_mode is not None and tls_key_mode & 0o077:
        loose_keys.append(f"TLS key {tls.key_file} (mode {tls_key_mode:o})")
    if key_file_mode is not None and key_file_mode & 0o077:
        loose_keys.append(f"key-encryption key file (mode {key_file_mode & 0o777:o})")
    if loose_keys:
        found.append(
            DeployWarning(
                "sealflow.W004",
                "Private key files readable by group or others: "
                + ", ".join(loose_keys)
                + "; make them 600.",
            )
        )

    allowed = _parse_networks(ssrf_allow)
    metadata = [entry for entry, net in allowed if _overlaps(net, _METADATA)]
    if metadata:
        found.append(
            DeployWarning(
                "sealflow.W005",
                f"The SSRF allow-list {metadata} includes a cloud metadata address; "
                "connectors could read the machine's credentials.",
            )
        )
    private = [entry for entry, net in allowed if _overlaps(net, _GUARDED)]
    if private:
        found.append(
            DeployWarning(
                "sealflow.W006",
                f"The SSRF allow-list {private} opens private, loopback or link-local "
                "addresses to connectors; allow single hosts, not ranges.",
            )
        )

    if not hsts:
        found.append(
            DeployWarning(
                "sealflow.W007",
                "HSTS is disabled; browsers may be downgraded to plain HTTP.",
            )
        )
    if tls.profile == "intermediate":
        found.append(
            DeployWarning(
                "sealflow.I001",
                'TLS profile is "intermediate"; use "modern" (TLS 1.3 only) when all '
                "clients support it.",
                level="info",
            )
        )
    return sorted(found, key=lambda w: (w.level != "warning", w.id))
