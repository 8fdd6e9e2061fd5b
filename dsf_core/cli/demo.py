"""``dsf demo``: bring up an HRP, a DMS and three DICs on loopback and run the MII processes end to end."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dsf_core.cli.main import CommandError, configure_logging

if TYPE_CHECKING:
    from dsf_core.demo import Demo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a whole network on this machine: ping, feasibility, data transfer, KDS report",
        description=(
            "Start five organisations on 127.0.0.1 (an HRP, a DMS and three DICs with synthetic patient data; "
            "real mTLS, SQLite, nothing external), run ping all-to-all, a feasibility query, a data transfer "
            "DIC → DMS and a KDS report round, and print what each process did. Exits 0 only if every process "
            "ended as expected."
        ),
    )
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object on stdout (progress goes to stderr)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the network running afterwards (URLs and certificates printed) until Ctrl-C")
    parser.add_argument("--directory", type=Path, metavar="DIR",
                        help="where the network, data stores and keys go (default: a temporary directory, "
                             "removed at the end unless --keep)")
    parser.add_argument("--patients", type=int, default=200, metavar="N", help="synthetic patients per DIC (default 200)")
    parser.add_argument("--log-level", default="ERROR", help="log level of the nodes (default ERROR)")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.patients < 1:
        raise CommandError("--patients must be at least 1")
    configure_logging(args.log_level)
    if args.directory is not None:
        args.directory.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_run(args, args.directory))
    if args.keep:
        return asyncio.run(_run(args, Path(tempfile.mkdtemp(prefix="dsf-demo-"))))
    with tempfile.TemporaryDirectory(prefix="dsf-demo-") as directory:
        return asyncio.run(_run(args, Path(directory)))


async def _run(args: argparse.Namespace, directory: Path) -> int:
    from dsf_core.demo import Demo, DemoError

    started = time.monotonic()
    out = sys.stderr if args.json else sys.stdout

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {line}", file=out, flush=True)

    demo = Demo(directory.resolve(), patients=args.patients, progress=progress)
    try:
        async with demo.running() as net:
            await demo.run_phases(net)
            ok = all(r.ok for r in demo.results)
            if args.json:
                print(json.dumps({"ok": ok, "results": [r.to_json() for r in demo.results]}, indent=2), flush=True)
            else:
                _table(demo, out)
                print(f"{'all processes ended as expected' if ok else 'SOME PROCESSES FAILED'} "
                      f"in {time.monotonic() - started:.1f} s", file=out, flush=True)
            if args.keep:
                _keep(demo, directory, out)
                await _wait_for_interrupt()
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    return 0 if ok else 1


def _table(demo: Demo, out: TextIO) -> None:
    rows = [("process", "organization", "outcome", "codes", "wall time")]
    for r in demo.results:
        outcome = r.task_status if r.ok else f"{r.task_status} (unexpected: {r.detail})"
        rows.append((r.process, r.organization, outcome, ", ".join(r.codes) or "-", f"{r.seconds:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * width for width in widths), file=out)


def _keep(demo: Demo, directory: Path, out: TextIO) -> None:
    assert demo.network is not None and demo.network.layout is not None
    layout = demo.network.layout
    lines = [f"network kept running in {directory} (Ctrl-C stops it)", f"CA certificate: {layout.ca_cert}"]
    for org in layout.organizations:
        lines.append(f"  {org.identifier:<11} {'+'.join(org.roles):<4} {org.base_url}")
        lines.append(f"              client certificate {org.client_cert}, key {org.client_key}")
    for identifier, store in demo.stores.items():
        lines.append(f"  data store of {identifier}: {store.base_url}")
    for line in lines:
        print(line, file=out, flush=True)


async def _wait_for_interrupt() -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
