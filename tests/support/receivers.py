"""Local receivers for the SIEM and alert tests, on 127.0.0.1: an HTTPS (or HTTP) endpoint
that records each POST and answers a status the test sets, and a syslog-over-TLS listener
that keeps every byte it reads. Certificates from a CA the test makes (dev_certificate)."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sealflow.dev_certificate import ensure_dev_certificate


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(ca, cert, key) for 127.0.0.1 and localhost."""
    ca, cert, key = ensure_dev_certificate(directory, hostnames=("localhost",),
                                           ips=("127.0.0.1",))
    return Path(ca), Path(cert), Path(key)


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    server: ThreadingHTTPServer
    scheme: str
    status: int = 200
    accepted: list[Posted] = field(default_factory=list)
    refused: list[Posted] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}/ingest"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_http_receiver(cert: Path | None = None, key: Path | None = None) -> HttpReceiver:
    receiver: HttpReceiver

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            posted = Posted(self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
            with receiver.lock:
                status = receiver.status
                (receiver.accepted if status < 300 else receiver.refused).append(posted)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if cert is not None and key is not None:
        server.socket = _server_context(cert, key).wrap_socket(server.socket, server_side=True)
        scheme = "https"
    receiver = HttpReceiver(server, scheme)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@dataclass
class SyslogReceiver:
    sock: socket.socket
    data: bytearray = field(default_factory=bytearray)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def received(self) -> bytes:
        with self.lock:
            return bytes(self.data)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def start_syslog_receiver(cert: Path, key: Path) -> SyslogReceiver:
    context = _server_context(cert, key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    receiver = SyslogReceiver(sock)

    def serve() -> None:
        while not receiver.stopped.is_set():
            try:
                raw, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                raw.settimeout(5)
                with context.wrap_socket(raw, server_side=True) as tls:
                    with receiver.lock:
                        receiver.connections += 1
                    while chunk := tls.recv(65536):
                        with receiver.lock:
                            receiver.data.extend(chunk)
            except (OSError, ssl.SSLError):
                continue

    threading.Thread(target=serve, daemon=True).start()
    return receiver
