"""``dsf node start``: run one organisation — its mailbox and its business process engine."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from dsf_core import loop as event_loop
from dsf_core.cli.main import CommandError, configure_logging
from dsf_core.settings import Settings, SettingsError, load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("node", help="one organisation's node: mailbox + process engine")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    start = commands.add_parser(
        "start",
        help="start the node (runs until SIGINT/SIGTERM)",
        description="Start the FHIR mailbox and, unless engine.enabled is false, the process engine with "
        "every installed process plugin (entry points dsf.process_plugins) and those in engine.plugin_dirs.",
    )
    start.add_argument("--config", type=Path, help="node TOML file (settings may also come from DSF_* variables)")
    start.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    start.add_argument(
        "--engine-only", action="store_true",
        help="run only the process engine, against the mailbox at engine.fhir_base_url (a mailbox in the DMZ "
        "started with `dsf fhir start`); the engine then needs engine.trust_server_cas for that mailbox",
    )
    start.set_defaults(func=_start)


def _start(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    if args.engine_only and not settings.engine.enabled:
        raise CommandError("--engine-only with engine.enabled = false leaves nothing to run")
    event_loop.run(_serve(settings, mailbox=not args.engine_only), settings.server.event_loop)
    return 0


async def _serve(settings: Settings, *, mailbox: bool = True) -> None:
    from dsf_core import heap
    from dsf_core.bpe.deployment import DeploymentError
    from dsf_core.node import Node

    node = Node(settings, mailbox=mailbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except DeploymentError as exc:
        raise CommandError(f"deployment failed: {exc}") from None
    try:
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, asyncio.ensure_future(node.ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            heap.settle()
            processes = node.engine.active_processes() if node.engine else []
            where = settings.server.base_url if mailbox else f"engine of the mailbox {settings.engine_fhir_base_url}"
            print(f"dsf node: {settings.organization.identifier} ready at {where} "
                  f"({len(processes)} processes: {', '.join(processes) or 'engine disabled'})", flush=True)
        await waiter
    finally:
        await node.stop()
