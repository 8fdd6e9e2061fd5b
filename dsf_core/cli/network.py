"""``dsf network``: a local multi-organisation development network.

``init`` writes the files (CA and certificates, allow list, one node config per organisation,
manifest); the manifest ``DIR/network.toml`` is what ``dsf network up DIR`` starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsf_core.cli.main import CommandError
from dsf_core.network import (
    DEFAULT_ORGANIZATIONS,
    DEFAULT_PARENT,
    ORGANIZATION_ROLES,
    NetworkError,
    NetworkLayout,
    init_network,
    parse_org_spec,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``network`` command group to the top-level ``dsf`` parser."""
    parser = subparsers.add_parser(
        "network",
        help="local multi-organisation development network",
        description="Create and run a DSF network of several organisations on this machine.",
    )
    commands = parser.add_subparsers(dest="network_command", metavar="COMMAND")
    commands.required = True

    defaults = " ".join(f"{o.identifier}:{'+'.join(o.roles)}" for o in DEFAULT_ORGANIZATIONS)
    init = commands.add_parser(
        "init",
        help="write the files of a development network",
        description=(
            "Write a development CA and certificates (DIR/pki), one allow list (DIR/allow-list.json), "
            "one node config per organisation (DIR/<identifier>/node.toml, on a free port of 127.0.0.1) "
            "and the manifest DIR/network.toml."
        ),
        epilog=f"Without --org: {defaults}. Roles: {', '.join(ORGANIZATION_ROLES)}.",
    )
    init.add_argument("directory", metavar="DIR", type=Path)
    init.add_argument(
        "--parent",
        metavar="ID",
        default=DEFAULT_PARENT,
        help="identifier of the parent organisation (consortium) the roles belong to (default: %(default)s)",
    )
    init.add_argument(
        "--org",
        metavar="IDENTIFIER:ROLE[+ROLE...]",
        action="append",
        dest="orgs",
        help="an organisation and its roles, e.g. dic-1.test:DIC or b.test:HRP+DIC (repeatable)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing network in DIR (its certificates and node databases are deleted)",
    )
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    try:
        organizations = [parse_org_spec(text) for text in args.orgs] if args.orgs else list(DEFAULT_ORGANIZATIONS)
        layout = init_network(args.directory, parent=args.parent, organizations=organizations, overwrite=args.force)
    except NetworkError as exc:
        raise CommandError(str(exc)) from None
    _print_summary(layout, args.directory)
    return 0


def _print_summary(layout: NetworkLayout, directory: Path) -> None:
    print(f"Development network in {layout.directory} (parent organisation {layout.parent}):")
    width = max(len(o.identifier) for o in layout.organizations)
    roles_width = max(len("+".join(o.roles)) for o in layout.organizations)
    for org in layout.organizations:
        print(f"  {org.identifier:<{width}}  {'+'.join(org.roles):<{roles_width}}  {org.base_url}")
    print(f"CA certificate: {layout.ca_cert}")
    print(f"Next: dsf network up {directory}")
