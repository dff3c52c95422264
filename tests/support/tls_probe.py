"""TLS probes shared by the TLS tests: sslyze's Mozilla check and a plaintext request."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def sslyze(config: str, port: int, ca: Path | str | None) -> subprocess.CompletedProcess[str]:
    # The dev CA is private, so sslyze's path validation (part of the Mozilla check) needs it
    # as an extra trust store; everything else is checked exactly as for a public server.
    trust = [f"--certinfo_ca_file={ca}"] if ca else []
    return subprocess.run(
        [sys.executable, "-m", "sslyze", f"--mozilla_config={config}", *trust, f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=180,
    )


def plaintext_reply(port: int) -> bytes:
    """Everything the port sends back to a plaintext HTTP request."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return received
