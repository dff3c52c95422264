"""T1 against the real `sealflow serve`: sslyze's Mozilla checks (intermediate by default,
modern with SEALFLOW_TLS_PROFILE=modern) and no plaintext answer on the port."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.server import make_server


def sslyze(config: str, port: int, ca: str) -> subprocess.CompletedProcess[str]:
    # The dev CA is private: sslyze's path validation needs it as an extra trust store.
    return subprocess.run(
        [sys.executable, "-m", "sslyze", f"--mozilla_config={config}",
         f"--certinfo_ca_file={ca}", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=180,
    )


def test_sealflow_serve_is_mozilla_intermediate_compliant(server):
    result = sslyze("intermediate", server.port, server.ca)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "OK - Compliant" in result.stdout


@pytest.fixture(scope="module")
def modern(tmp_path_factory):
    s = make_server(tmp_path_factory.mktemp("modern"), SEALFLOW_TLS_PROFILE="modern")
    s.start()
    yield s
    s.stop()


def test_modern_profile_is_mozilla_modern_compliant(modern):
    result = sslyze("modern", modern.port, modern.ca)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "OK - Compliant" in result.stdout


def test_plaintext_http_gets_no_http_answer(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not received.startswith(b"HTTP/")
    assert b"HTTP/1" not in received
