"""T1 against the real `sealflow serve`: sslyze's Mozilla checks (intermediate by default,
modern with SEALFLOW_TLS_PROFILE=modern) and no plaintext answer on the port."""

from __future__ import annotations

import pytest

from tests.support.server import make_server
from tests.support.tls_probe import plaintext_reply, sslyze


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
    received = plaintext_reply(server.port)
    assert not received.startswith(b"HTTP/")
    assert b"HTTP/1" not in received
