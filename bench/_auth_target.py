"""BENCH ONLY: the API that bench/webhook.py --compare-audit's `http` step calls. A tiny
plain-HTTP/1.1 keep-alive server on 127.0.0.1 that answers a constant JSON when the request
carries the expected API key, 401 otherwise, so a run only succeeds when sealflow decrypted
the authentication and injected it. Kept minimal (an asyncio protocol, uvloop when present)
so that it takes little of the client's core.

    BENCH_TARGET_KEY=... python bench/_auth_target.py --port P [--header X-Api-Key]

GET /stats (no key needed) answers {"ok": n, "refused": m, "connections": k}: the bench
compares `ok` with the decryptions on the audit trail; `connections` shows whether sealflow's
HTTP client kept its connections alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from typing import cast

HOST = "127.0.0.1"
BODY = b'{"ok":true,"rate":1}'


def response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


OK = response("200 OK", BODY)
REFUSED = response("401 Unauthorized", b'{"error":"bad or missing api key"}')


class Target(asyncio.Protocol):
    def __init__(self, header: bytes, key: bytes, counts: dict[str, int]) -> None:
        self.header, self.key, self.counts = header, key, counts
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].split(b"\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.answer(head[0], headers)

    def answer(self, request_line: bytes, headers: dict[bytes, bytes]) -> None:
        assert self.transport is not None
        if request_line.split(b" ")[1:2] == [b"/stats"]:
            self.transport.write(response("200 OK", json.dumps(self.counts).encode()))
        elif headers.get(self.header) == self.key:
            self.counts["ok"] += 1
            self.transport.write(OK)
        else:
            self.counts["refused"] += 1
            self.transport.write(REFUSED)
        if headers.get(b"connection", b"").lower() == b"close":
            self.transport.close()


async def serve(port: int, header: str, key: str) -> None:
    counts = {"ok": 0, "refused": 0, "connections": 0}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Target(header.lower().encode(), key.encode(), counts), HOST, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--header", default="X-Api-Key")
    args = parser.parse_args()
    key = os.environ["BENCH_TARGET_KEY"]  # a value the bench generated; never printed
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(args.port, args.header, key))


if __name__ == "__main__":
    main()
