"""The ceiling for bench/webhook.py: a bare Starlette endpoint that answers a constant, served
exactly as `sealflow serve` serves (sealflow.tls.build_ssl_context with the same development
certificate, sealflow.tls.make_server: same uvicorn, loop and HTTP parser, no access log).

    python bench/_ceiling_app.py --port PORT --tls-dir DATA_DIR/tls

Run by bench/webhook.py; not meant to be used on its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sealflow.tls import TlsSettings, build_ssl_context, serve

BODY = b'{"id":"A-17","total":25.0,"big":true}'


async def hook(_request: Request) -> Response:
    return Response(BODY, media_type="application/json")


async def healthz(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-dir", type=Path, required=True,
                        help="the development certificate directory (<data dir>/tls)")
    args = parser.parse_args()
    app = Starlette(routes=[Route("/hooks/{region}/{token}", hook, methods=["POST"]),
                            Route("/healthz", healthz)])
    context = build_ssl_context(TlsSettings(dev_dir=args.tls_dir))
    serve(app, args.host, args.port, context, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
