"""The ``dsf`` command: one entry point with noun-verb sub-commands.

Each command group lives in its own module of this package and exposes
``register(subparsers)``; ``GROUPS`` lists them in help order.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

GROUPS: tuple[str, ...] = ("demo", "pki", "fhir", "node", "network", "data", "keys", "plugin")


class CommandError(Exception):
    """A command failed for a reason the user can fix; printed without a traceback."""


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log lines to stderr in :data:`LOG_FORMAT`, written in batches (``dsf_core.logstream``).

    The format names no source file, line, thread or process, so logging does not look them up
    for every record (the optimisation the logging HOWTO describes): a sixth of a line's cost,
    and the mailbox writes an audit line for every request.
    """
    root = logging.getLogger()
    if root.handlers:  # configured already (a second command in one process, a test)
        root.setLevel(level.upper())
    else:
        from dsf_core.logstream import BatchedHandler, BatchedStream, LineFormatter

        handler = BatchedHandler(BatchedStream(sys.stderr))
        handler.setFormatter(LineFormatter(LOG_FORMAT))
        logging.basicConfig(level=level.upper(), handlers=[handler])
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsf", description="dsf-py: Data Sharing Framework node tools")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for name in GROUPS:
        module = importlib.import_module(f"dsf_core.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except CommandError as exc:
        print(f"dsf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
