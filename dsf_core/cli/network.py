"""``dsf network``: a local multi-organisation development network.

``init`` writes the files (CA and certificates, allow list, one node config per organisation,
manifest); the manifest ``DIR/network.toml`` is what ``dsf network up DIR`` starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsf_core.cli.main import CommandError, configure_logging
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

    ping = commands.add_parser(
        "ping",
        help="ping every other organisation from one organisation of a running network",
        description="POST a startPing Task (process dsfdev_ping of the ping_pong plugin) to the organisation's "
        "mailbox, wait for it to finish and print one line per target with its ping-status.",
    )
    ping.add_argument("directory", metavar="DIR", type=Path)
    ping.add_argument("--from", dest="origin", metavar="IDENTIFIER", help="pinging organisation (default: the first)")
    ping.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the result (default 60)")
    ping.set_defaults(func=cmd_ping)


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

    from dsf_core.network import load_network

    configure_logging(args.log_level)
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

    from dsf_core import heap
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
        heap.settle()
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


def cmd_ping(args: argparse.Namespace) -> int:
    import asyncio

    from dsf_core.network import load_network

    try:
        layout = load_network(args.directory)
        org = layout.organization(args.origin) if args.origin else layout.organizations[0]
    except NetworkError as exc:
        raise CommandError(str(exc)) from None
    except KeyError:
        raise CommandError(f"{args.origin} is not an organisation of {layout.manifest}") from None
    return asyncio.run(_ping(layout, org.identifier, args.timeout))


async def _ping(layout: NetworkLayout, identifier: str, timeout: float) -> int:
    import asyncio
    import time

    from dsf_core.api.tasks import BPMN_MESSAGE, organization_reference, parameter
    from dsf_core.client import ClientFactory, FhirClientError

    org = layout.organization(identifier)
    task = {
        "resourceType": "Task",
        "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"]},
        "instantiatesCanonical": "http://dsf.dev/bpe/Process/ping|1.0",
        "status": "requested",
        "intent": "order",
        "authoredOn": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "requester": organization_reference(identifier),
        "restriction": {"recipient": [organization_reference(identifier)]},
        "input": [parameter(BPMN_MESSAGE, "message-name", "String", "startPing")],
    }
    async with ClientFactory.from_files(cafile=layout.ca_cert, cert_file=org.client_cert, key_file=org.client_key) as clients:
        fhir = clients.client(org.base_url)
        try:
            created = await fhir.create(task)
            deadline = time.monotonic() + timeout
            while (current := await fhir.read("Task", created.id))["status"] not in ("completed", "failed"):
                if time.monotonic() > deadline:
                    raise CommandError(f"Task/{created.id} still {current['status']} after {timeout:g}s")
                await asyncio.sleep(0.2)
        except FhirClientError as exc:
            raise CommandError(f"{org.base_url}: {exc} (is the network up?)") from None
    print(f"Task/{created.id} on {identifier}: {current['status']}")
    for output in current.get("output", []):
        code = output.get("type", {}).get("coding", [{}])[0].get("code")
        if code == "ping-status":
            parts = {e["url"]: e for e in output.get("extension", [{}])[0].get("extension", [])}
            target = parts.get("organization-identifier", {}).get("valueIdentifier", {}).get("value", "?")
            error = parts.get("error-message", {}).get("valueString", "")
            print(f"  {target:<24} {output['valueCoding']['code']}  {error}".rstrip())
        elif code == "error":
            print(f"  error: {output.get('valueString')}")
    return 0 if current["status"] == "completed" else 1
