"""A local HTTP server the tests start on 127.0.0.1: the "third-party API" that workflows call.
It records every request and answers from a script: a list of (status, headers, body) per
path, the last entry repeating."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Target:
    server: ThreadingHTTPServer
    scripts: dict[str, list[tuple[int, dict[str, str], Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, path: str, *responses: tuple[int, dict[str, str], Any]) -> None:
        self.scripts[path] = list(responses)

    def hits(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_target() -> Target:
    target: Target

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            record = Recorded(
                self.command,
                parts.path,
                dict(parse_qsl(parts.query)),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            with target.lock:
                target.requests.append(record)
                script = target.scripts.get(parts.path)
                if parts.path.startswith("/reflect"):
                    status, headers, payload = _reflect(record)
                elif script:
                    status, headers, payload = script[0] if len(script) == 1 else script.pop(0)
                else:  # default: echo what was received
                    status, headers, payload = (
                        200,
                        {},
                        {
                            "method": record.method,
                            "path": record.path,
                            "query": record.query,
                            "json": _maybe_json(body),
                            "headers": record.headers,
                        },
                    )
            headers = dict(headers)
            delay = float(headers.pop("X-Test-Delay", 0))
            if delay:  # a slow third party
                time.sleep(delay)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "content-type" not in {k.lower() for k in headers}:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    target = Target(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return target


def _reflect(record: Recorded) -> tuple[int, dict[str, str], Any]:
    """A careless third party: it reflects what it received (the credentials included) in
    its body, in its headers, base64'd, and, under /reflect/fail, in an error message."""
    received = json.dumps({"headers": record.headers, "query": record.query,
                           "body": record.body.decode("utf-8", "replace")})
    credential = record.headers.get("authorization") or record.headers.get("x-key") or \
        record.query.get("key", "")
    headers = {"X-Echo-Credential": credential, "Set-Cookie": f"session={credential}"}
    if record.path.startswith("/reflect/fail"):
        return 400, headers, {"error": f"invalid credential {credential!r} in {received}"}
    return 200, headers, {"received": json.loads(received), "credential": credential,
                          "b64": base64.b64encode(received.encode()).decode()}


def _maybe_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", "replace")
