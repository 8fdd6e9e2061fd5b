"""Client certificate → identity over real mTLS (dsf-core §2.2)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from dsf_core import pki
from dsf_core.testing.mailbox import MailboxHarness


async def test_allow_listed_organizations_are_identified(tmp_path: Path, database_url: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url) as mb:
        async with mb.client("local.test") as http:
            response = await http.get(mb.url("Organization"))
            assert response.status == 200
            bundle = await response.json()
            identifiers = {e["resource"]["identifier"][0]["value"] for e in bundle["entry"]}
            assert identifiers == {"local.test", "remote.test", "parent.test"}
        async with mb.client("remote.test") as http:
            response = await http.get(mb.url("Endpoint"))
            assert response.status == 200
            assert (await response.json())["total"] == 2


async def test_unknown_certificate_gets_401_with_outcome(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client("unknown.test") as http:
            response = await http.get(mb.url("Endpoint"))
            assert response.status == 401
            outcome = await response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "login"


async def test_no_certificate_never_completes_tls(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        async with mb.client(None) as http:
            with pytest.raises(aiohttp.ClientError):
                response = await http.get(mb.url("Endpoint"))
                await response.read()


async def test_certificate_from_untrusted_ca_never_completes_tls(tmp_path: Path) -> None:
    foreign = pki.DevPki.init(tmp_path / "foreign")
    files = foreign.issue_organization("local.test")
    async with MailboxHarness(tmp_path / "node") as mb:
        context = pki.client_ssl_context(cafile=mb.pki.ca_cert_path, cert_file=files.client.cert_path, key_file=files.client.key_path)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            with pytest.raises(aiohttp.ClientError):
                response = await http.get(mb.url("Endpoint"))
                await response.read()
