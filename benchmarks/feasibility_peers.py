"""Child processes of ``benchmarks/feasibility.py``: data stores, or DIC nodes, in one process.

    python benchmarks/feasibility_peers.py --mode stores --stores DIR,DIR,... --out FILE --log FILE
    python benchmarks/feasibility_peers.py --mode nodes --network DIR --orgs a.test,b.test --config FILE --log FILE

``stores``  one :class:`~dsf_core.testing.data_store.DataStoreServer` per directory (our server
            in data-store mode on 127.0.0.1, real TLS from its own development CA, SQLite in
            ``DIR/data/fhir.sqlite``, no auth), all in this process; once every store accepts
            connections their ``base_url`` and CA are written to ``--out`` as JSON
            (directory → {base_url, ca}).
``nodes``   every listed organisation runs its real node (mailbox + engine with the feasibility
            plugin) from the files ``dsf network init`` wrote, with the production engine
            settings of ``benchmarks/peers.py`` and ``DSF_PLUGINS_FEASIBILITY_CONFIG=--config``;
            their ``[data_stores.default]`` tables are already in their ``node.toml``.

INFO logging goes to ``--log`` with epoch timestamps (``%(created).3f``) so the benchmark can
place log lines on its own clock.  Both modes count the requests each server answers (the
census of ``peers.py``: by kind, handler time, response bytes) and speak ``peers.py``'s
protocol (``peers.run``): ``peers: ready``, then ``stats`` and ``stop-engine`` from stdin;
they stop on SIGTERM/SIGINT or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ENGINE_SETTINGS, Census, run

LOG_FORMAT = "%(created).3f %(levelname)s %(name)s: %(message)s"


def count_requests(census: Census, name_of: Any) -> None:
    """Put the census middleware in front of every app the server factory builds from now on."""
    import dsf_core.server.app as app_module

    factory = app_module.create_app

    def create_app(settings: Any, **kwargs: Any) -> web.Application:
        app = factory(settings, **kwargs)
        app.middlewares.insert(0, census.middleware(name_of(settings)))
        return app

    app_module.create_app = create_app


class Stores:
    def __init__(self, directories: list[Path], out: Path, census: Census) -> None:
        self.directories = directories
        self.out = out
        self.census = census
        self.stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        from dsf_core.testing.data_store import DataStoreServer

        # Every store's local organisation is data-store.test: name them by directory instead.
        count_requests(self.census, lambda settings: Path(settings.node.data_dir).parent.name)
        started = {}
        for directory in self.directories:
            store = await self.stack.enter_async_context(DataStoreServer(directory))
            started[str(directory)] = {"base_url": store.base_url, "ca": str(store.ca_cert)}
        self.out.write_bytes(orjson.dumps(started))

    async def stop_engines(self) -> None:
        return None

    async def stop(self) -> None:
        await self.stack.aclose()


class Nodes:
    def __init__(self, network: Path, organizations: list[str], config: Path, census: Census) -> None:
        self.directory = network
        self.organizations = organizations
        self.config = config
        self.census = census
        self.network: Any = None

    async def start(self) -> None:
        from dsf_plugin_feasibility import PLUGIN  # type: ignore[import-untyped]

        from dsf_core.network import load_network
        from dsf_core.testing.network import Network

        count_requests(self.census, lambda settings: settings.organization.identifier)
        settings = {**ENGINE_SETTINGS, "DSF_PLUGINS_FEASIBILITY_CONFIG": str(self.config)}
        self.network = Network(self.directory, plugins=[PLUGIN], settings=settings)
        self.network.layout = load_network(self.directory)
        await asyncio.gather(*(self.network.start_node(o, timeout=300) for o in self.organizations))

    async def stop_engines(self) -> None:
        await asyncio.gather(*(self.network.node(o).stop_engine() for o in self.organizations))

    async def stop(self) -> None:
        if self.network is not None:
            await self.network.stop()


async def serve(args: argparse.Namespace) -> None:
    census = Census()
    peers: Stores | Nodes
    if args.mode == "stores":
        peers = Stores([Path(d) for d in args.stores.split(",") if d], args.out, census)
    else:
        peers = Nodes(args.network, [o for o in args.orgs.split(",") if o], args.config, census)
    await run(peers, census)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=("stores", "nodes"), required=True)
    parser.add_argument("--stores", help="stores: comma-separated DataStoreServer directories")
    parser.add_argument("--out", type=Path, help="stores: JSON file for the stores' base URLs and CAs")
    parser.add_argument("--network", type=Path, help="nodes: directory written by dsf network init")
    parser.add_argument("--orgs", help="nodes: comma-separated organisation identifiers to run here")
    parser.add_argument("--config", type=Path, help="nodes: the [plugins.feasibility] settings file")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    needed = ("stores", "out") if args.mode == "stores" else ("network", "orgs", "config")
    missing = [f"--{n}" for n in needed if getattr(args, n) is None]
    if missing:
        parser.error(f"--mode {args.mode} needs {', '.join(missing)}")
    logging.basicConfig(filename=args.log, level=logging.INFO, format=LOG_FORMAT)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
