"""Peers for ``benchmarks/engine.py``: some organisations of a development network, in one process.

    python benchmarks/peers.py --network DIR --orgs a.test,b.test --mode node|bare --log FILE

``node``  every listed organisation runs its real node (mailbox + engine with the ping/pong
          plugin) from the files ``dsf network init`` wrote, with the production engine
          settings and INFO logging (to ``--log``), as ``dsf node start`` runs it.
``bare``  every listed organisation's base URL is answered by a bare aiohttp server behind
          the same server certificate, client-CA trust and TLS context builder
          (``dsf_core.pki.server_ssl_context``): ``GET`` answers a JSON body of
          ``X-Bare-Size`` bytes; ``POST``/``PUT`` read the body and answer it back (nothing
          with ``Prefer: return=minimal``, as the mailbox); with ``X-Bare-Push: <token>`` the body is
          also pushed, as ``<token> <body>``, to every websocket open on ``<base>/ws`` — the
          bare counterpart of a subscription push.

Both modes count the requests each organisation's server answers, by kind (``PUT Task/<id>``,
``GET Endpoint?``, ...), with the time spent in the handler, the response size and the first
path + query seen (so a script can replay the same searches). Prints
``peers: ready`` once every server accepts connections, then answers commands read from stdin,
one line each:

``stats``        → ``stats <json>``: the counts since the last ``stats``, then reset
``stop-engine``  → ``ok``: stops every engine, the mailboxes keep running (node mode)

Stops on SIGTERM/SIGINT or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from dsf_core import loop as event_loop
from dsf_core import heap, pki
from dsf_core.network import load_network

#: Production engine settings (the test network's defaults retry and catch up faster).
ENGINE_SETTINGS = {
    "DSF_ENGINE_SEND_ATTEMPTS": "3",
    "DSF_ENGINE_SEND_RETRY_SECONDS": "2",
    "DSF_ENGINE_RECONNECT_SECONDS": "5",
    "DSF_ENGINE_CATCH_UP_SECONDS": "60",
}

_ID = re.compile(r"/[0-9A-Za-z\-.]{1,64}$")


def request_kind(method: str, path: str, query: str) -> str:
    """``PUT Task/<id>``, ``GET Endpoint?``, ``POST Task``, ``GET ws``: the shape of a request, not its values."""
    tail = path.split("/fhir/", 1)[-1] if "/fhir/" in path else path.lstrip("/")
    if tail == "ws":
        return "GET ws"
    parts = tail.split("/")
    shape = parts[0] + ("/<id>" if len(parts) > 1 else "") + ("?" if query else "")
    return f"{method} {shape}"


class Census:
    """Requests answered per organisation and kind: count, handler milliseconds, response bytes, a sample path."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0, 0, ""]))

    def middleware(self, organization: str) -> Any:
        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            t0 = time.perf_counter()
            size = 0
            try:
                response: web.StreamResponse = await handler(request)
                body = getattr(response, "body", None)
                size = len(body) if isinstance(body, (bytes, bytearray)) else 0
                return response
            finally:
                entry = self.counts[organization][request_kind(request.method, request.path, request.query_string)]
                entry[0] += 1
                entry[1] += (time.perf_counter() - t0) * 1000
                entry[2] += size
                entry[3] = entry[3] or request.path_qs

        return count

    def take(self) -> dict[str, dict[str, list[Any]]]:
        out = {org: {kind: [int(v[0]), round(v[1], 3), int(v[2]), v[3]] for kind, v in kinds.items()}
               for org, kinds in self.counts.items()}
        self.counts.clear()
        return out


# --------------------------------------------------------------------------- node mode


class Nodes:
    def __init__(self, directory: Path, organizations: list[str], census: Census) -> None:
        self.directory = directory
        self.organizations = organizations
        self.census = census
        self.network: Any = None

    async def start(self) -> None:
        # The census middleware goes in front of the mailbox's own middlewares. Mailbox builds its
        # app through this module-level factory, so wrapping it here is the one seam that needs
        # no change to dsf_core.
        from dsf_plugin_ping_pong import PLUGIN  # type: ignore[import-untyped]

        import dsf_core.server.app as app_module
        from dsf_core.testing.network import Network

        factory = app_module.create_app

        def create_app(settings: Any, **kwargs: Any) -> web.Application:
            app = factory(settings, **kwargs)
            app.middlewares.insert(0, self.census.middleware(settings.organization.identifier))
            return app

        app_module.create_app = create_app
        self.network = Network(self.directory, plugins=[PLUGIN], settings=ENGINE_SETTINGS)
        self.network.layout = load_network(self.directory)
        await asyncio.gather(*(self.network.start_node(o, timeout=120) for o in self.organizations))

    async def stop_engines(self) -> None:
        await asyncio.gather(*(self.network.node(o).stop_engine() for o in self.organizations))

    async def stop(self) -> None:
        if self.network is not None:
            await self.network.stop()


# --------------------------------------------------------------------------- bare mode


def _sized_body(size: int) -> bytes:
    skeleton = {"resourceType": "Bundle", "id": "bare", "text": ""}
    skeleton["text"] = "x" * max(size - len(orjson.dumps(skeleton)), 0)
    return orjson.dumps(skeleton)


def bare_app(organization: str, census: Census) -> web.Application:
    sockets: set[web.WebSocketResponse] = set()
    bodies: dict[int, bytes] = {}

    async def get(request: web.Request) -> web.Response:
        size = int(request.headers.get("X-Bare-Size", "1500"))
        body = bodies.get(size) or bodies.setdefault(size, _sized_body(size))
        return web.Response(body=body, content_type="application/fhir+json")

    async def write(request: web.Request) -> web.Response:
        body = await request.read()
        token = request.headers.get("X-Bare-Push")
        if token:
            message = f"{token} {body.decode()}"
            for ws in list(sockets):
                await ws.send_str(message)
        minimal = "return=minimal" in request.headers.get("Prefer", "")
        return web.Response(status=201 if request.method == "POST" else 200, body=b"" if minimal else body,
                            content_type="application/fhir+json")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data.startswith("bind "):
                    await ws.send_str(f"bound {msg.data[5:].strip()}")
        finally:
            sockets.discard(ws)
        return ws

    app = web.Application(middlewares=[census.middleware(organization)], client_max_size=64 * 1024 * 1024)
    app.router.add_get("/fhir/ws", websocket)
    app.router.add_get("/{tail:.*}", get)
    app.router.add_post("/{tail:.*}", write)
    app.router.add_put("/{tail:.*}", write)
    return app


class BareServers:
    def __init__(self, directory: Path, organizations: list[str], census: Census) -> None:
        self.layout = load_network(directory)
        self.organizations = organizations
        self.census = census
        self.runners: list[web.AppRunner] = []

    async def start(self) -> None:
        for identifier in self.organizations:
            org = self.layout.organization(identifier)
            context = pki.server_ssl_context(org.server_cert, org.server_key, trust_cafile=self.layout.ca_cert,
                                             require_client_cert=True)
            runner = web.AppRunner(bare_app(identifier, self.census), access_log=None, shutdown_timeout=5)
            await runner.setup()
            self.runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", org.port, ssl_context=context, reuse_address=True).start()

    async def stop_engines(self) -> None:
        return None

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


# --------------------------------------------------------------------------- main


async def serve(args: argparse.Namespace) -> None:
    census = Census()
    organizations = [o for o in args.orgs.split(",") if o]
    peers: Nodes | BareServers = (Nodes if args.mode == "node" else BareServers)(args.network, organizations, census)
    await run(peers, census)


async def run(peers: Any, census: Census) -> None:
    """Start *peers* (anything with async ``start``, ``stop_engines`` and ``stop``), print the ready
    line, answer the commands on stdin until it closes or a signal comes, then stop them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await peers.start()
        heap.settle()  # as `dsf node start` and `dsf fhir start` do once they serve (bare servers too: same floor)
        print("peers: ready", flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def commands() -> None:
            while line := (await reader.readline()).decode().strip():
                if line == "stats":
                    print("stats " + orjson.dumps(census.take()).decode(), flush=True)
                elif line == "stop-engine":
                    await peers.stop_engines()
                    print("ok", flush=True)
                else:
                    print(f"error unknown command {line!r}", flush=True)
            stop.set()

        command_loop = asyncio.ensure_future(commands())
        await stop.wait()
        command_loop.cancel()
    finally:
        await peers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--network", type=Path, required=True, help="directory written by dsf network init")
    parser.add_argument("--orgs", required=True, help="comma-separated organisation identifiers to run here")
    parser.add_argument("--mode", choices=("node", "bare"), required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    event_loop.run(serve(args))  # the loop `dsf node start` runs on (server.event_loop's default)


if __name__ == "__main__":
    main()
