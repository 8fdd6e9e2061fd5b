"""A running mailbox for tests: development PKI, allow list, real mTLS on loopback.

::

    async with MailboxHarness(tmp_path, remotes={"remote-dic.test": ["DIC"]}) as mb:
        async with mb.client("remote-dic.test") as http:
            response = await http.get(mb.url("Task"))

``client(identifier)`` is an aiohttp session presenting that organisation's client
certificate; ``client(None)`` presents none; ``ssl_context(identifier)`` gives the TLS context
for other clients (fhirpy, websockets).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from dsf_core import pki
from dsf_core.server.app import Mailbox
from dsf_core.settings import (
    AuthSettings,
    DatabaseSettings,
    NodeSettings,
    OrganizationSettings,
    ServerSettings,
    Settings,
    TlsSettings,
)
from dsf_core.testing.allow_list import Member, allow_list_bundle


def bind_free_port(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


class MailboxHarness:
    def __init__(
        self,
        directory: Path,
        *,
        local: str = "local.test",
        remotes: Mapping[str, Sequence[str]] | None = None,
        local_roles: Sequence[str] = ("DIC",),
        parent: str = "parent.test",
        database_url: str | None = None,
        mode: str = "dsf",
        trusted_proxies: Sequence[str] = (),
        server_overrides: Mapping[str, Any] | None = None,
        auth_overrides: Mapping[str, Any] | None = None,
        database_overrides: Mapping[str, Any] | None = None,
        pki_dir: Path | None = None,
    ) -> None:
        self.directory = directory
        self.local = local
        self.remotes = dict(remotes or {"remote.test": ["DIC"]})
        self.local_roles = list(local_roles)
        self.parent = parent
        self.database_url = database_url
        self.mode = mode
        self.trusted_proxies = tuple(trusted_proxies)
        self.server_overrides = dict(server_overrides or {})
        self.auth_overrides = dict(auth_overrides or {})
        self.database_overrides = dict(database_overrides or {})
        self.pki_dir = pki_dir or directory / "pki"
        self.mailbox: Mailbox | None = None
        self.orgs: dict[str, pki.OrganizationFiles] = {}

    async def __aenter__(self) -> MailboxHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.stop()

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        dev = pki.DevPki.open(self.pki_dir) if (self.pki_dir / "ca.crt").exists() else pki.DevPki.init(self.pki_dir)
        self.pki = dev
        for identifier in [self.local, *self.remotes, "unknown.test"]:
            if identifier not in self.orgs:
                self.orgs[identifier] = dev.issue_organization(identifier)
        sock = bind_free_port()
        self.port = sock.getsockname()[1]
        scheme = "https"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}/fhir"
        members = [
            Member(identifier, self.orgs[identifier].client_thumbprint, f"https://127.0.0.1:1/{identifier}", roles)
            for identifier, roles in self.remotes.items()
        ]
        bundle = allow_list_bundle(members, parent=self.parent)
        # The local organisation's role membership (its Organization itself is written at start-up).
        if self.local_roles:
            bundle["entry"].append(
                {
                    "fullUrl": "urn:uuid:aff-local",
                    "resource": {
                        "resourceType": "OrganizationAffiliation",
                        "meta": {"tag": [{"system": "http://dsf.dev/fhir/CodeSystem/read-access-tag", "code": "ALL"}]},
                        "active": True,
                        "organization": {"reference": f"urn:uuid:parent-{self.parent}", "type": "Organization"},
                        "participatingOrganization": {
                            "type": "Organization",
                            "identifier": {"system": "http://dsf.dev/sid/organization-identifier", "value": self.local},
                        },
                        "code": [
                            {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/organization-role", "code": r}]}
                            for r in self.local_roles
                        ],
                    },
                    "request": {"method": "POST", "url": "OrganizationAffiliation"},
                }
            )
        bundle_path = self.directory / "allow-list.json"
        bundle_path.write_bytes(orjson.dumps(bundle))
        local_files = self.orgs[self.local]
        self.settings = Settings(
            node=NodeSettings(mode=self.mode, data_dir=self.directory / "data"),  # type: ignore[arg-type]
            server=replace(ServerSettings(host="127.0.0.1", port=self.port, base_url=self.base_url), **self.server_overrides),
            tls=TlsSettings(
                certificate=local_files.server.cert_path,
                private_key=local_files.server.key_path,
                trust_client_cas=dev.ca_cert_path,
                require_client_certificate=not self.trusted_proxies,
            ),
            auth=replace(AuthSettings(trusted_proxies=self.trusted_proxies), **self.auth_overrides),
            organization=OrganizationSettings(
                identifier=self.local,
                client_certificate=local_files.client.cert_path,
                client_private_key=local_files.client.key_path,
                init_bundle=bundle_path if self.mode == "dsf" else None,
            ),
            database=replace(DatabaseSettings(url=self.database_url), **self.database_overrides),
        )
        self.mailbox = Mailbox(self.settings)
        await self.mailbox.start(sock)

    async def stop(self) -> None:
        if self.mailbox is not None:
            await self.mailbox.stop()
            self.mailbox = None

    @property
    def store(self) -> Any:
        assert self.mailbox is not None
        return self.mailbox.store

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def ssl_context(self, identifier: str | None) -> ssl.SSLContext:
        if identifier is None:
            return pki.client_ssl_context(cafile=self.pki.ca_cert_path)
        files = self.orgs[identifier]
        return pki.client_ssl_context(cafile=self.pki.ca_cert_path, cert_file=files.client.cert_path, key_file=files.client.key_path)

    def client(self, identifier: str | None, *, json: bool = True) -> aiohttp.ClientSession:
        headers = {"Accept": "application/fhir+json"} if json else {}
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl_context(identifier)), headers=headers)
