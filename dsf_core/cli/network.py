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

    up = commands.add_parser(
        "up",
        help="start every node of a development network (runs until SIGINT/SIGTERM)",
        description=(
            "Start the mailbox and process engine of every organisation in DIR/network.toml in this process. "
            "Prints a line 'ready' once every mailbox accepts connections and every engine is subscribed, and "
            "writes DIR/network.json (parent, CA certificate, each organisation's identifier, roles, FHIR base "
            "URL and client certificate/key, absolute paths) for scripts and tests."
        ),
    )
    up.add_argument("directory", metavar="DIR", type=Path)
    up.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every node to be ready")
    up.set_defaults(func=cmd_up)


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


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from dsf_core.network import load_network

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        layout = load_network(args.directory)
    except NetworkError as exc:
        raise CommandError(str(exc)) from None
    asyncio.run(_up(layout, args.timeout))
    return 0


async def _up(layout: NetworkLayout, timeout: float) -> None:
    import asyncio
    import json
    import signal

    from dsf_core.bpe.deployment import DeploymentError
    from dsf_core.node import Node
    from dsf_core.settings import SettingsError, load_settings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    nodes: list[Node] = []
    try:
        for org in layout.organizations:
            try:
                node = Node(load_settings(org.config))
            except SettingsError as exc:
                raise CommandError(str(exc)) from None
            nodes.append(node)
        try:
            await asyncio.gather(*(n.start() for n in nodes))
        except DeploymentError as exc:
            raise CommandError(f"deployment failed: {exc}") from None
        except OSError as exc:
            raise CommandError(f"a node could not start: {exc}") from None
        ready = asyncio.gather(*(n.ready.wait() for n in nodes))
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            late = [n.settings.organization.identifier for n in nodes if not n.ready.is_set()]
            raise CommandError(f"not ready after {timeout:g}s: {', '.join(late)}") from None
        document = {
            "parent": layout.parent,
            "ca_cert": str(layout.ca_cert.resolve()),
            "organizations": [
                {
                    "identifier": o.identifier,
                    "roles": list(o.roles),
                    "fhir_base_url": o.base_url,
                    "client_cert": str(o.client_cert.resolve()),
                    "client_key": str(o.client_key.resolve()),
                }
                for o in layout.organizations
            ],
        }
        (layout.directory / "network.json").write_text(json.dumps(document, indent=2) + "\n")
        for org in layout.organizations:
            print(f"  {org.identifier:<24} {org.base_url}", flush=True)
        print("ready", flush=True)
        await stop.wait()
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
