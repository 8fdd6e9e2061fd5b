"""``dsf data``: synthetic KDS-shaped clinical data for data stores, tests and benchmarks.

``generate`` writes one FHIR transaction Bundle (``PUT Type/id`` entries) streaming, patient by
patient, so any number of patients fits in bounded memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dsf_core.cli.main import CommandError
from dsf_core.data import REFERENCE_DATE, DataError, DatasetSpec, PatientGroup, patient_groups, write_transaction


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``data`` command group to the top-level ``dsf`` parser."""
    parser = subparsers.add_parser(
        "data",
        help="synthetic clinical data (MII core data set shapes)",
        description="Generate synthetic patients shaped like the MII Kerndatensatz.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND")
    commands.required = True

    generate = commands.add_parser(
        "generate",
        help="write a transaction Bundle of synthetic patients",
        description=(
            "Write one FHIR transaction Bundle (PUT Type/id entries, one per line) of N patients with "
            "Encounters, Conditions (ICD-10-GM), Observations (LOINC), Procedures (OPS), Medications (ATC), "
            "Specimens and Consents. The same arguments always give the same file."
        ),
    )
    generate.add_argument("--patients", metavar="N", type=int, required=True, help="number of patients (at least 1)")
    generate.add_argument("--seed", metavar="S", type=int, default=0, help="random seed (default: %(default)s)")
    generate.add_argument("--out", metavar="FILE", required=True, help="output file, '-' for standard output")
    generate.add_argument(
        "--reference-date",
        metavar="YYYY-MM-DD",
        type=_date,
        default=REFERENCE_DATE,
        help="'today' of the data: every date lies before it (default: %(default)s)",
    )
    generate.add_argument(
        "--id-prefix", metavar="P", help="prefix of every resource id, distinct per store (default: s<seed>)"
    )
    generate.add_argument(
        "--site", metavar="HOST", default="dic.example.org", help="host in the identifier systems (default: %(default)s)"
    )
    generate.add_argument("--quiet", action="store_true", help="no progress on standard error")
    generate.set_defaults(func=cmd_generate)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _with_progress(groups: Iterator[PatientGroup], total: int, interval: float = 1.0) -> Iterator[PatientGroup]:
    """Pass *groups* on, saying on stderr how far it got about every *interval* seconds (not in the data)."""
    resources = 0
    shown = time.monotonic()
    for group in groups:
        resources += len(group.resources)
        yield group
        if time.monotonic() - shown >= interval:
            shown = time.monotonic()
            print(f"generated {group.index}/{total} patients ({resources} resources)", file=sys.stderr, flush=True)


def cmd_generate(args: argparse.Namespace) -> int:
    try:
        spec = DatasetSpec(args.patients, args.seed, args.reference_date, args.id_prefix, args.site)
    except DataError as exc:
        raise CommandError(str(exc)) from None
    groups = patient_groups(spec)
    if not args.quiet:
        groups = _with_progress(groups, spec.patients)
    if args.out == "-":
        counts = write_transaction(groups, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        counts = _write_file(Path(args.out), groups)
    if not args.quiet:
        summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
        print(f"wrote {sum(counts.values())} resources to {args.out}: {summary}", file=sys.stderr)
    return 0


def _write_file(path: Path, groups: Iterator[PatientGroup]) -> Counter[str]:
    """Write to ``FILE.part`` and rename when complete, so a failed run leaves no truncated Bundle."""
    if path.is_dir():
        raise CommandError(f"{path}: is a directory")
    partial = path.with_name(path.name + ".part")
    try:
        out: IO[bytes] = open(partial, "wb", buffering=1 << 20)
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with out:
            counts = write_transaction(groups, out)
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CommandError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise
    return counts
