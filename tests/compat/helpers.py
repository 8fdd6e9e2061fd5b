"""Shared pieces of the compatibility tests: reference files, headers, assertions, harnesses."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dsf_core.fhir import codes
from dsf_core.testing.mailbox import MailboxHarness

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
CONFORMANCE = REFERENCE / "dsf-2.1.0-conformance"
EXAMPLES = REFERENCE / "dsf-2.1.0-examples"
PING_PONG = REFERENCE / "dsf-ping-pong-1.0.1.0" / "fhir"

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}
XML_IN_JSON_OUT = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"}

FHIR_NS = "http://hl7.org/fhir"
TAG_ALL = {"system": codes.READ_ACCESS_TAG, "code": "ALL"}
TAG_LOCAL = {"system": codes.READ_ACCESS_TAG, "code": "LOCAL"}

BACKENDS = ["sqlite", "postgresql"]


def require_reference() -> None:
    if not REFERENCE.exists():
        pytest.skip(f"reference files not found at {REFERENCE}")


def database_url_for(request: pytest.FixtureRequest, backend: str, directory: Path) -> str:
    """The same databases the ``database_url`` fixture hands out, for module-scoped harnesses."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / 'fhir.sqlite'}"
    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database())


@asynccontextmanager
async def harness(
    request: pytest.FixtureRequest, backend: str, directory: Path, **kwargs: Any
) -> AsyncIterator[MailboxHarness]:
    async with MailboxHarness(directory, database_url=database_url_for(request, backend, directory), **kwargs) as mb:
        yield mb


async def assert_outcome(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The response has this status and is an OperationOutcome whose first issue has this code."""
    text = await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {text[:500]}"
    outcome = orjson.loads(text)
    assert outcome["resourceType"] == "OperationOutcome", text[:500]
    assert outcome["issue"][0]["code"] == code, text[:500]
    return outcome  # type: ignore[no-any-return]


def org_ref(identifier: str) -> dict[str, Any]:
    """A logical Organization reference as DSF Tasks carry them."""
    return {"type": "Organization", "identifier": {"system": codes.ORGANIZATION_IDENTIFIER, "value": identifier}}


def strip_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy without what the server sets (id, meta.versionId, meta.lastUpdated)."""
    out = copy.deepcopy(resource)
    out.pop("id", None)
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
    return out
