"""The baseline for ``benchmarks/mailbox.py``: a bare aiohttp handler over the same mTLS setup.

Same server certificate, same client-CA trust, same TLS context builder
(``dsf_core.pki.server_ssl_context``) as the mailbox, no database and no FHIR logic:
``GET /bare`` answers a fixed JSON body of ``--body-bytes`` bytes, ``POST /bare`` reads the
request body and answers the same.  Binds a free loopback port and prints
``bare: ready at <url>`` once it accepts connections; stops on SIGTERM/SIGINT.

    python benchmarks/bare_server.py --cert server.crt --key server.key --ca ca.crt --body-bytes 1500
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from pathlib import Path

import orjson
from aiohttp import web

from dsf_core import loop as event_loop
from dsf_core import pki

CONTENT_TYPE = "application/fhir+json"


def fixed_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least the bare skeleton)."""
    skeleton = {"resourceType": "Basic", "id": "bare", "text": ""}
    pad = max(size - len(orjson.dumps(skeleton)), 0)
    skeleton["text"] = "x" * pad
    return orjson.dumps(skeleton)


def make_app(body: bytes) -> web.Application:
    async def get(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=CONTENT_TYPE, charset="utf-8")

    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=body, content_type=CONTENT_TYPE, charset="utf-8")

    app = web.Application()
    app.router.add_get("/bare", get)
    app.router.add_post("/bare", post)
    return app


async def serve(args: argparse.Namespace) -> None:
    context = pki.server_ssl_context(args.cert, args.key, trust_cafile=args.ca, require_client_cert=True)
    runner = web.AppRunner(make_app(fixed_body(args.body_bytes)), access_log=None, shutdown_timeout=5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"bare: ready at https://127.0.0.1:{sock.getsockname()[1]}/bare", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--body-bytes", type=int, default=1500)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the loop the node runs on by default (server.event_loop), so the floor is the same setup")
    args = parser.parse_args()
    event_loop.run(serve(args), args.event_loop)


if __name__ == "__main__":
    main()
