"""``dsf fhir``: run the FHIR mailbox server."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from dsf_core import loop as event_loop
from dsf_core.cli.main import CommandError, configure_logging
from dsf_core.settings import Settings, SettingsError, load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("fhir", help="the FHIR mailbox server")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    start = commands.add_parser("start", help="start the mailbox (runs until SIGINT/SIGTERM)")
    start.add_argument("--config", type=Path, help="node TOML file (settings may also come from DSF_* variables)")
    start.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    start.set_defaults(func=_start)


def _start(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    try:
        event_loop.run(_serve(settings), settings.server.event_loop)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    return 0


async def _serve(settings: Settings) -> None:
    from dsf_core import heap
    from dsf_core.server.app import Mailbox

    mailbox = Mailbox(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await mailbox.start()
    heap.settle()
    print(f"dsf fhir: ready at {mailbox.settings.server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await mailbox.stop()
