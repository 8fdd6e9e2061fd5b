"""Mailboxes started from the node configs ``init_network`` writes recognise each other over mTLS.

Three organisations, parent p.test: a.test (DIC), b.test (HRP), c.test (COS).  Every mailbox runs
from its own ``node.toml`` on the port written there, with real TLS on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dsf_core import pki
from dsf_core.fhir import codes
from dsf_core.network import NetworkLayout, OrgSpec, init_network
from dsf_core.server.app import Mailbox
from dsf_core.settings import load_settings

JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
ORGS = [OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("HRP",)), OrgSpec("c.test", ("COS",))]


@asynccontextmanager
async def running(layout: NetworkLayout, identifier: str) -> AsyncIterator[Mailbox]:
    # environ={}: the node runs from its file alone, as `dsf network up` will start it.
    mailbox = Mailbox(load_settings(layout.organization(identifier).config, environ={}))
    await mailbox.start()
    try:
        yield mailbox
    finally:
        await mailbox.stop()


def session(layout: NetworkLayout, identifier: str) -> aiohttp.ClientSession:
    """An HTTP client presenting *identifier*'s client certificate, trusting the network CA."""
    org = layout.organization(identifier)
    context = pki.client_ssl_context(cafile=layout.ca_cert, cert_file=org.client_cert, key_file=org.client_key)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=JSON)


async def get(layout: NetworkLayout, who: str, server: str, path: str) -> tuple[int, Any]:
    async with session(layout, who) as http:
        response = await http.get(f"{layout.organization(server).base_url}/{path}")
        return response.status, await response.json(content_type=None)


def tag(code: str, extension: dict[str, Any] | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"system": codes.READ_ACCESS_TAG, "code": code}
    if extension:
        t["extension"] = [extension]
    return t


def code_system(name: str, tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "meta": {"tag": tags},
        "url": f"http://test.org/fhir/CodeSystem/{name}",
        "version": "1.0",
        "name": name,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "x"}],
    }


@pytest.fixture
def layout(tmp_path: Path) -> NetworkLayout:
    return init_network(tmp_path / "net", parent="p.test", organizations=ORGS)


async def test_peers_are_identified_by_their_client_certificates(layout: NetworkLayout, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        for org in layout.organizations:
            await stack.enter_async_context(running(layout, org.identifier))

        # A asks B's mailbox for A's own Organization: the allow-list entry, with A's thumbprint.
        status, bundle = await get(layout, "a.test", "b.test", f"Organization?identifier={codes.ORGANIZATION_IDENTIFIER}|a.test")
        assert status == 200 and bundle["total"] == 1
        organization = bundle["entry"][0]["resource"]
        a = layout.organization("a.test")
        assert organization["extension"] == [
            {"url": codes.EXT_THUMBPRINT, "valueString": pki.thumbprint(pki.load_certificate(a.client_cert))}
        ]

        # Every node sees the whole allow list: members, parent, endpoints at the written URLs, roles.
        for reader, server in [("a.test", "b.test"), ("c.test", "a.test"), ("b.test", "c.test")]:
            status, bundle = await get(layout, reader, server, "Organization")
            assert status == 200
            assert {e["resource"]["identifier"][0]["value"] for e in bundle["entry"]} == {"p.test", "a.test", "b.test", "c.test"}
            status, bundle = await get(layout, reader, server, "Endpoint")
            assert {e["resource"]["address"] for e in bundle["entry"]} == {o.base_url for o in layout.organizations}
            status, bundle = await get(layout, reader, server, "OrganizationAffiliation")
            roles = sorted(c["coding"][0]["code"] for e in bundle["entry"] for c in e["resource"]["code"])
            assert roles == ["COS", "DIC", "HRP"]

        # B tells A from C: a resource B shares with organisation a.test only, and one shared with
        # role DIC in p.test (A's role from the allow list), are readable by A and not by C.
        ids = {}
        async with session(layout, "b.test") as http:
            for name, tags in {
                "for-a": [tag("LOCAL"), tag("ORGANIZATION", {
                    "url": codes.EXT_READ_ACCESS_ORGANIZATION,
                    "valueIdentifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": "a.test"},
                })],
                "for-dic": [tag("LOCAL"), tag("ROLE", {
                    "url": codes.EXT_READ_ACCESS_ROLE,
                    "extension": [
                        {"url": "parent-organization", "valueIdentifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": "p.test"}},
                        {"url": "organization-role", "valueCoding": {"system": codes.ORGANIZATION_ROLE, "code": "DIC"}},
                    ],
                })],
            }.items():
                response = await http.post(f"{layout.organization('b.test').base_url}/CodeSystem", json=code_system(name, tags))
                assert response.status == 201, await response.text()
                ids[name] = (await response.json())["id"]
        for name in ids:
            assert (await get(layout, "a.test", "b.test", f"CodeSystem/{ids[name]}"))[0] == 200
            status, outcome = await get(layout, "c.test", "b.test", f"CodeSystem/{ids[name]}")
            assert status == 403 and outcome["issue"][0]["code"] == "forbidden"

        # A peer is remote, never local: B's LOCAL Subscriptions are invisible to A, visible to B.
        assert (await get(layout, "a.test", "b.test", "Subscription"))[1]["total"] == 0
        assert (await get(layout, "b.test", "b.test", "Subscription"))[1]["total"] == 2

        # A certificate from the network's CA that is on no allow list gets 401.
        ca = pki.DevPki.open(layout.ca_cert.parent).ca
        stranger = pki.issue_certificate(ca, "stranger.test", client=True)
        pki.write_issued(stranger, tmp_path / "stranger.crt", tmp_path / "stranger.key")
        context = pki.client_ssl_context(cafile=layout.ca_cert, cert_file=tmp_path / "stranger.crt", key_file=tmp_path / "stranger.key")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=JSON) as http:
            response = await http.get(f"{layout.organization('b.test').base_url}/Organization")
            assert response.status == 401
            assert (await response.json(content_type=None))["issue"][0]["code"] == "login"


async def allow_list_state(layout: NetworkLayout, identifier: str) -> dict[str, list[tuple[str, ...]]]:
    """What *identifier*'s mailbox holds of the allow list, read as that organisation (local)."""
    state: dict[str, list[tuple[str, ...]]] = {}
    async with session(layout, identifier) as http:
        for type_ in ("Organization", "Endpoint", "OrganizationAffiliation"):
            response = await http.get(f"{layout.organization(identifier).base_url}/{type_}?_count=100")
            assert response.status == 200
            bundle = await response.json()
            assert bundle["total"] == len(bundle.get("entry", []))
            state[type_] = sorted(_key(e["resource"]) for e in bundle.get("entry", []))
    return state


def _key(resource: dict[str, Any]) -> tuple[str, ...]:
    if resource["resourceType"] == "OrganizationAffiliation":
        return (resource["id"], *(c["coding"][0]["code"] for c in resource["code"]))
    thumbprints = tuple(e["valueString"] for e in resource.get("extension", []) if e["url"] == codes.EXT_THUMBPRINT)
    return (resource["id"], resource["identifier"][0]["value"], resource.get("address", ""), resource.get("name", ""), *thumbprints)


async def test_restarts_and_start_order_create_no_duplicates(layout: NetworkLayout) -> None:
    # C first, then A and B; then B twice more; every start loads the allow list and writes the
    # node's own Organization and Endpoint again.
    async with running(layout, "c.test"), running(layout, "a.test"):
        async with running(layout, "b.test"):
            first = await allow_list_state(layout, "b.test")
        assert len(first["Organization"]) == 4  # p.test, a.test, b.test, c.test
        assert len(first["Endpoint"]) == 3 and len(first["OrganizationAffiliation"]) == 3

        # B's own entries, as the allow list has them and as B wrote them at start, are one resource each.
        b = layout.organization("b.test")
        own = [k for k in first["Organization"] if k[1] == "b.test"]
        assert own == [(own[0][0], "b.test", "", "b.test", pki.thumbprint(pki.load_certificate(b.client_cert)))]
        assert [k[2] for k in first["Endpoint"] if k[1] == "b.test"] == [b.base_url]

        for _ in range(2):
            async with running(layout, "b.test"):
                assert await allow_list_state(layout, "b.test") == first
                # and B still knows its peers by certificate
                assert (await get(layout, "a.test", "b.test", "Endpoint"))[0] == 200
