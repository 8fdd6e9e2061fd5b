"""Where the files of a development network are, and the manifest ``DIR/network.toml`` naming them.

::

    DIR/
      network.toml             this manifest (paths relative to DIR)
      allow-list.json          the one allow list every node loads at start
      pki/ca.crt, pki/ca.key   the development CA
      pki/<identifier>/        server.crt|key, client.crt|key of each organisation (keys 0600)
      <identifier>/node.toml   the node configuration of each organisation
      <identifier>/data/       its databases (created when the node starts)

:func:`load_network` reads the manifest back into a :class:`NetworkLayout` with absolute paths.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dsf_core.network import _toml
from dsf_core.network.spec import NetworkError, check_identifier, check_role

MANIFEST = "network.toml"
ALLOW_LIST = "allow-list.json"
PKI_DIR = "pki"
NODE_CONFIG = "node.toml"
DATA_DIR = "data"
FORMAT = 1


@dataclass(frozen=True)
class OrganizationLayout:
    """One organisation of the network: its roles, node config, URL and certificate files."""

    identifier: str
    roles: tuple[str, ...]
    config: Path
    base_url: str
    client_cert: Path
    client_key: Path
    server_cert: Path
    server_key: Path

    @property
    def directory(self) -> Path:
        """The organisation's directory (holds ``node.toml`` and ``data/``)."""
        return self.config.parent

    @property
    def port(self) -> int:
        """The loopback port of its mailbox, as in ``base_url``."""
        port = urlsplit(self.base_url).port
        assert port is not None, self.base_url  # load_network refuses base URLs without a port
        return port


@dataclass(frozen=True)
class NetworkLayout:
    """A development network on disk (all paths absolute)."""

    directory: Path
    parent: str
    ca_cert: Path
    allow_list: Path
    organizations: tuple[OrganizationLayout, ...]

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST

    def organization(self, identifier: str) -> OrganizationLayout:
        """The member with *identifier*; KeyError naming the members if there is none."""
        for org in self.organizations:
            if org.identifier == identifier:
                return org
        known = ", ".join(o.identifier for o in self.organizations)
        raise KeyError(f"{identifier!r} is not an organization of the network in {self.directory} ({known})")


def org_paths(identifier: str) -> dict[str, Path]:
    """The file names of one organisation, relative to the network *directory* (the layout above)."""
    pki = Path(PKI_DIR) / identifier
    return {
        "config": Path(identifier) / NODE_CONFIG,
        "client_certificate": pki / "client.crt",
        "client_private_key": pki / "client.key",
        "server_certificate": pki / "server.crt",
        "server_private_key": pki / "server.key",
    }


def manifest_text(parent: str, organizations: list[tuple[str, tuple[str, ...], str]]) -> str:
    """``network.toml`` for members given as (identifier, roles, base_url)."""
    tables = [
        _toml.table(
            "[network]",
            {
                "format": FORMAT,
                "parent": parent,
                "ca_certificate": Path(PKI_DIR) / "ca.crt",
                "allow_list": Path(ALLOW_LIST),
            },
        )
    ]
    for identifier, roles, base_url in organizations:
        values: dict[str, _toml.Value | None] = {"identifier": identifier, "roles": list(roles), "base_url": base_url}
        values.update(org_paths(identifier))
        tables.append(_toml.table("[[organization]]", values))
    comments = [
        "A local DSF development network, written by `dsf network init`.",
        "Start it with `dsf network up DIR`. Paths are relative to this file's directory.",
    ]
    return _toml.document(comments, tables)


# --------------------------------------------------------------------------- loading


def _manifest_path(directory: Path) -> Path:
    directory = Path(directory)
    return directory if directory.is_file() else directory / MANIFEST


def load_network(directory: Path) -> NetworkLayout:
    """Read ``DIR/network.toml`` (or the manifest file given directly) into a :class:`NetworkLayout`.

    Every referenced file must exist; errors name the manifest and the offending entry.
    """
    path = _manifest_path(directory)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NetworkError(f"{path}: not found; create a network with `dsf network init {path.parent}`") from None
    except OSError as exc:
        raise NetworkError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NetworkError(f"{path}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    network = _table(raw, "network", path)
    fmt = network.get("format", FORMAT)
    if fmt != FORMAT:
        raise NetworkError(f"{path}: network.format {fmt!r} is not supported (expected {FORMAT})")
    parent = _str(network, "parent", path, "network")
    try:
        check_identifier(parent, "parent organization identifier")
    except NetworkError as exc:
        raise NetworkError(f"{path}: network.parent: {exc}") from None
    ca_cert = _file(base, _str(network, "ca_certificate", path, "network"), path, "network.ca_certificate")
    allow_list = _file(base, _str(network, "allow_list", path, "network"), path, "network.allow_list")

    entries = raw.get("organization", [])
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise NetworkError(f"{path}: needs at least one [[organization]] table")
    organizations: list[OrganizationLayout] = []
    for index, entry in enumerate(entries):
        organizations.append(_organization(entry, index, base, path))
    seen: set[str] = set()
    for org in organizations:
        if org.identifier in seen:
            raise NetworkError(f"{path}: organization {org.identifier} is listed twice")
        seen.add(org.identifier)
    return NetworkLayout(base, parent, ca_cert, allow_list, tuple(organizations))


def _organization(entry: Mapping[str, Any], index: int, base: Path, path: Path) -> OrganizationLayout:
    where = f"organization[{index}]"
    identifier = _str(entry, "identifier", path, where)
    try:
        check_identifier(identifier)
    except NetworkError as exc:
        raise NetworkError(f"{path}: {where}.identifier: {exc}") from None
    where = f"organization {identifier}"
    roles = entry.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise NetworkError(f"{path}: {where}: roles must be a non-empty list of role codes")
    try:
        checked_roles = tuple(check_role(r, identifier) for r in roles)
    except NetworkError as exc:
        raise NetworkError(f"{path}: {exc}") from None
    base_url = _str(entry, "base_url", path, where)
    parts = urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname or parts.port is None:
        raise NetworkError(f"{path}: {where}: base_url must be https://HOST:PORT/..., got {base_url!r}")

    def file(key: str) -> Path:
        return _file(base, _str(entry, key, path, where), path, f"{where}: {key}")

    return OrganizationLayout(
        identifier=identifier,
        roles=checked_roles,
        config=file("config"),
        base_url=base_url,
        client_cert=file("client_certificate"),
        client_key=file("client_private_key"),
        server_cert=file("server_certificate"),
        server_key=file("server_private_key"),
    )


def _table(raw: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise NetworkError(f"{path}: missing [{key}] table")
    return value


def _str(table: Mapping[str, Any], key: str, path: Path, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise NetworkError(f"{path}: {where}: {key} missing or not a string")
    return value


def _file(base: Path, value: str, path: Path, what: str) -> Path:
    resolved = Path(value).expanduser()
    if not resolved.is_absolute():
        resolved = base / resolved
    if not resolved.is_file():
        raise NetworkError(f"{path}: {what}: {resolved} not found")
    return resolved
