"""``init_network``: write the files of a local multi-organisation development network.

Order of work: check every input, pick the ports, and only then write (CA, certificates, allow
list, node configs, manifest), so bad input never leaves half a network.  The allow list and the
node configs are built from the same values (identifier, name, endpoint identifier, base URL,
client-certificate thumbprint), which is what keeps the allow-list entry of an organisation and
the Organization/Endpoint its own mailbox writes at start-up (``server/initial.py``) identical:
both are conditional PUTs on the same identifiers, so any start order and any number of restarts
leave one resource each.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from dsf_core import pki
from dsf_core.network import _toml
from dsf_core.network.layout import (
    ALLOW_LIST,
    DATA_DIR,
    MANIFEST,
    NODE_CONFIG,
    PKI_DIR,
    NetworkLayout,
    load_network,
    manifest_text,
    org_paths,
)
from dsf_core.network.spec import DEFAULT_ORGANIZATIONS, DEFAULT_PARENT, NetworkError, OrgSpec, check_network
from dsf_core.settings import SettingsError, load_settings
from dsf_core.network.allow_list import Member, allow_list_bundle

#: Files ``dsf network up`` writes beside the manifest; replaced with the network.
RUNTIME_FILES = ("network.json",)
CA_COMMON_NAME = "DSF Development Network CA"


@dataclass(frozen=True)
class _Planned:
    spec: OrgSpec
    port: int
    base_url: str

    @property
    def endpoint_identifier(self) -> str:
        # The default initial.py uses when organization.endpoint_identifier is unset, so a
        # node.toml edited to drop the key still agrees with the allow list.
        return self.spec.identifier


def init_network(
    directory: Path,
    *,
    parent: str = DEFAULT_PARENT,
    organizations: Sequence[OrgSpec] = DEFAULT_ORGANIZATIONS,
    host: str = "127.0.0.1",
    overwrite: bool = False,
) -> NetworkLayout:
    """Write a development network into *directory* and return its layout (read back from disk).

    One free port on *host* per organisation, a fresh CA, a server and client certificate per
    organisation, ``allow-list.json``, ``<identifier>/node.toml`` and ``network.toml``.  An
    existing network in *directory* is only replaced with *overwrite*; its certificates,
    node databases and ``network.json`` are deleted then.  Raises :class:`NetworkError`.
    """
    directory = Path(directory)
    parent, specs = check_network(parent, organizations)
    if not host:
        raise NetworkError("host must not be empty")
    if directory.exists() and not directory.is_dir():
        raise NetworkError(f"{directory}: exists and is not a directory")
    existing = _existing_files(directory, specs)
    if existing and not overwrite:
        raise NetworkError(
            f"{existing[0]}: a network exists already in {directory}; "
            "use --force to replace it (its certificates and node databases are deleted)"
        )
    ports = _free_ports(host, len(specs))
    planned = [_Planned(spec, port, _base_url(host, port)) for spec, port in zip(specs, ports, strict=True)]
    if existing:
        _remove_network(directory, specs)
    try:
        _write(directory, parent, planned, host)
    except (pki.PkiError, OSError) as exc:
        raise NetworkError(_describe(exc)) from exc
    return load_network(directory)


def _write(directory: Path, parent: str, planned: list[_Planned], host: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    dev = pki.DevPki.init(directory / PKI_DIR, common_name=CA_COMMON_NAME, overwrite=True)
    dns_names, ip_addresses = _subject_alt_names(host)
    members: list[Member] = []
    for plan in planned:
        files = dev.issue_organization(plan.spec.identifier, dns_names=dns_names, ip_addresses=ip_addresses)
        members.append(
            Member(
                identifier=plan.spec.identifier,
                thumbprint=files.client_thumbprint,
                base_url=plan.base_url,
                roles=plan.spec.roles,
                endpoint_identifier=plan.endpoint_identifier,
                name=plan.spec.display_name,
            )
        )
    bundle = allow_list_bundle(members, parent=parent)
    (directory / ALLOW_LIST).write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    for plan in planned:
        config = directory / plan.spec.identifier / NODE_CONFIG
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(_node_config(plan, host, directory))
        _check_config(config)
    manifest = manifest_text(parent, [(p.spec.identifier, p.spec.roles, p.base_url) for p in planned])
    (directory / MANIFEST).write_text(manifest)


def _node_config(plan: _Planned, host: str, directory: Path) -> str:
    identifier = plan.spec.identifier
    # Paths relative to the config's own directory (DIR/<identifier>/), so the network directory
    # can be moved or mounted elsewhere as a whole.
    up = Path("..")
    files = {key: up / path for key, path in org_paths(identifier).items()}
    ca = up / PKI_DIR / pki.DevPki.CA_CERT
    tables = [
        _toml.table("[node]", {"mode": "dsf", "data_dir": Path(DATA_DIR)}),
        _toml.table("[server]", {"host": host, "port": plan.port, "base_url": plan.base_url}),
        _toml.table(
            "[tls]",
            {
                "certificate": files["server_certificate"],
                "private_key": files["server_private_key"],
                "trust_client_cas": ca,
            },
        ),
        _toml.table(
            "[organization]",
            {
                "identifier": identifier,
                "name": plan.spec.display_name,
                "endpoint_identifier": plan.endpoint_identifier,
                "client_certificate": files["client_certificate"],
                "client_private_key": files["client_private_key"],
                "init_bundle": up / ALLOW_LIST,
            },
        ),
        _toml.table("[engine]", {"trust_server_cas": ca}),
    ]
    comments = [
        f"Node {identifier} ({'+'.join(plan.spec.roles)}) of the development network in {directory}.",
        "Written by `dsf network init`; relative paths are resolved against this file's directory.",
        "The allow list (organization.init_bundle) must keep agreeing with the [organization] and",
        "[server] values here: change both through `dsf network init --force`, not by hand.",
    ]
    return _toml.document(comments, tables)


def _check_config(config: Path) -> None:
    # The environment is left out on purpose: the file alone must be a complete node config.
    try:
        load_settings(config, environ={})
    except SettingsError as exc:  # a bug here, not a user error; say so plainly
        raise NetworkError(f"{config}: written config does not load: {exc}") from exc


def _existing_files(directory: Path, specs: Sequence[OrgSpec]) -> list[Path]:
    candidates = [
        directory / MANIFEST,
        directory / ALLOW_LIST,
        directory / PKI_DIR / pki.DevPki.CA_CERT,
        directory / PKI_DIR / pki.DevPki.CA_KEY,
        *(directory / name for name in RUNTIME_FILES),
    ]
    for spec in specs:
        candidates += [directory / spec.identifier / NODE_CONFIG, directory / spec.identifier / DATA_DIR]
    return [p for p in candidates if p.exists()]


def _remove_network(directory: Path, specs: Sequence[OrgSpec]) -> None:
    """Delete what an earlier ``init`` (and ``up``) wrote; nothing else in *directory*."""
    identifiers = {s.identifier for s in specs}
    try:
        identifiers |= {o.identifier for o in load_network(directory).organizations}
    except NetworkError:
        pass  # an unreadable or partial manifest: clean up what the new network would overwrite
    for name in (MANIFEST, ALLOW_LIST, *RUNTIME_FILES):
        (directory / name).unlink(missing_ok=True)
    if (directory / PKI_DIR / pki.DevPki.CA_CERT).exists() or (directory / PKI_DIR / pki.DevPki.CA_KEY).exists():
        shutil.rmtree(directory / PKI_DIR)
    for identifier in identifiers:
        org_dir = directory / identifier
        (org_dir / NODE_CONFIG).unlink(missing_ok=True)
        if (org_dir / DATA_DIR).is_dir():
            shutil.rmtree(org_dir / DATA_DIR)
        if org_dir.is_dir() and not any(org_dir.iterdir()):
            org_dir.rmdir()


def _free_ports(host: str, count: int) -> list[int]:
    """*count* distinct ports free on *host* now (all sockets held until every port is read)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    except OSError as exc:
        raise NetworkError(f"cannot bind a port on {host}: {exc.strerror or exc}") from None
    finally:
        for sock in sockets:
            sock.close()


def _base_url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}/fhir" if ":" in host else f"https://{host}:{port}/fhir"


def _subject_alt_names(host: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SANs of the server certificates: localhost and 127.0.0.1, plus *host* if it is neither."""
    dns_names, ip_addresses = ["localhost"], ["127.0.0.1"]
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        if host not in dns_names:
            dns_names.append(host)
    else:
        if address not in ip_addresses:
            ip_addresses.append(address)
    return tuple(dns_names), tuple(ip_addresses)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


__all__ = ["init_network"]
