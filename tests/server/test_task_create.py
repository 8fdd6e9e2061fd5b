"""POST Task end to end: literal references are resolved, and the ActivityDefinition and allow list in force are the ones just written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness
from tests.server.test_authorization import activity_definition, call, task


@pytest_asyncio.fixture(loop_scope="session")
async def mb(tmp_path: Path, database_url: str) -> AsyncIterator[MailboxHarness]:
    async with MailboxHarness(tmp_path, database_url=database_url, remotes={"remote.test": ["DIC"]}) as harness:
        status, _ = await call(harness, "local.test", "POST", "ActivityDefinition", activity_definition())
        assert status == 201
        yield harness


def with_reference(reference: dict[str, Any]) -> dict[str, Any]:
    t = task("local.test")
    t["input"].append({"type": {"coding": [{"system": "http://test.org/fhir/CodeSystem/x", "code": "ref"}]}, "valueReference": reference})
    return t


async def test_a_dangling_literal_reference_is_refused(mb: MailboxHarness) -> None:
    for reference in ("Binary/no-such-binary", f"{mb.base_url}/Organization/no-such-organization"):
        status, outcome = await call(mb, "local.test", "POST", "Task", with_reference({"reference": reference}))
        assert status == 403, outcome
        assert outcome["issue"][0]["code"] == "invariant"
        assert "does not resolve" in outcome["issue"][0]["diagnostics"]


async def test_a_resolving_reference_and_a_logical_one_are_accepted(mb: MailboxHarness) -> None:
    _, found = await call(mb, "local.test", "GET", "ActivityDefinition")
    definition = found["entry"][0]["resource"]["id"]
    for reference in ({"reference": f"ActivityDefinition/{definition}"}, {"identifier": {"system": codes.ENDPOINT_IDENTIFIER, "value": "x"}}):
        status, created = await call(mb, "local.test", "POST", "Task", with_reference(reference))
        assert status == 201, created


async def test_the_next_task_sees_an_activity_definition_change(mb: MailboxHarness) -> None:
    assert (await call(mb, "remote.test", "POST", "Task", task("remote.test")))[0] == 201
    _, found = await call(mb, "local.test", "GET", "ActivityDefinition")
    definition = found["entry"][0]["resource"]
    definition["status"] = "retired"
    assert (await call(mb, "local.test", "PUT", f"ActivityDefinition/{definition['id']}", definition))[0] == 200
    status, outcome = await call(mb, "remote.test", "POST", "Task", task("remote.test"))
    assert (status, outcome["issue"][0]["code"]) == (403, "forbidden")
    definition["status"] = "active"
    assert (await call(mb, "local.test", "PUT", f"ActivityDefinition/{definition['id']}", definition))[0] == 200
    assert (await call(mb, "remote.test", "POST", "Task", task("remote.test")))[0] == 201


async def test_the_next_task_sees_a_role_withdrawn(mb: MailboxHarness) -> None:
    assert (await call(mb, "remote.test", "POST", "Task", task("remote.test")))[0] == 201
    _, found = await call(mb, "local.test", "GET", "OrganizationAffiliation?active=true")
    for entry in found["entry"]:
        affiliation = entry["resource"]
        if affiliation["participatingOrganization"].get("identifier", {}).get("value") != "local.test":
            affiliation["active"] = False
            assert (await call(mb, "local.test", "PUT", f"OrganizationAffiliation/{affiliation['id']}", affiliation))[0] == 200
    status, outcome = await call(mb, "remote.test", "POST", "Task", task("remote.test"))
    assert (status, outcome["issue"][0]["code"]) == (403, "forbidden")
    assert "requester remote.test not authorized" in outcome["issue"][0]["diagnostics"]
