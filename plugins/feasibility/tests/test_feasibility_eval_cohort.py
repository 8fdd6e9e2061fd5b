"""What the cohort counter asks a store for, and how many searches it runs at once.

A small real aiohttp server stands in for the store here because the point is the requests
themselves: each search asks only for the patient reference (``_elements``) with a large
``_count``, pages are followed, at most ``concurrency`` searches are in flight, references that
name no Patient are skipped, included resources are ignored, and the first failing search stops
the rest.  Counting correctness against real data is the acceptance test's job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from dsf_core.api import FhirClient, FhirClientError

from dsf_plugin_feasibility.evaluation import CohortCounter, default_mapping, parse_structured_query, plan_query

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"


class Store:
    """Answers ``GET /fhir/Condition?code=...``: patients p1..p<n> for a code ``C<n>``, paged by ``_count``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_code: str | None = None
        app = web.Application()
        app.router.add_get("/fhir/{type}", self.search)
        self.runner = web.AppRunner(app)
        self.base = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}/fhir"

    async def search(self, request: web.Request) -> web.Response:
        type_ = request.match_info["type"]
        query = dict(request.query)
        self.requests.append((type_, query))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            code = query.get("code", "|C0").split("|")[1]
            if code == self.fail_code:
                return web.json_response({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "exception", "diagnostics": "index broken"}]}, status=500)  # fmt: skip
            n = int(code[1:])
            subjects: list[dict[str, Any]] = [{"reference": f"Patient/p{i}"} for i in range(1, n + 1)]
            subjects.append({"reference": f"{self.base}/Patient/p1/_history/3"})  # absolute and versioned: p1 again
            subjects.append({"reference": "Group/g1"})  # not a patient
            count, page = int(query["_count"]), int(query.get("_page", "1"))
            chunk = subjects[(page - 1) * count : page * count]
            entries = [{"resource": {"resourceType": type_, "id": f"c{i}", "subject": s}, "search": {"mode": "match"}} for i, s in enumerate(chunk)]
            entries.append({"resource": {"resourceType": "Patient", "id": "included"}, "search": {"mode": "include"}})
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries, "link": []}
            if page * count < len(subjects):
                bundle["link"].append({"relation": "next", "url": str(request.url.update_query({"_page": str(page + 1)}))})
            return web.json_response(bundle)
        finally:
            self.in_flight -= 1


@pytest_asyncio.fixture(loop_scope="session")
async def store() -> AsyncIterator[Store]:
    served = Store()
    await served.start()
    yield served
    await served.runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def client(store: Store) -> AsyncIterator[FhirClient]:
    async with aiohttp.ClientSession() as session:
        yield FhirClient(store.base, session=session, attempts=1)


def plan(*groups: list[str]) -> Any:
    query = {"inclusionCriteria": [[{"termCodes": [{"system": ICD, "code": c}]} for c in group] for group in groups]}
    return plan_query(parse_structured_query(query), default_mapping(), date(2025, 1, 1))


async def test_only_patient_references_large_pages_and_bounded_concurrency(store: Store, client: FhirClient) -> None:
    counter = CohortCounter(client, concurrency=2)
    result = await counter.count(plan(["C3", "C5", "C8"], ["C4", "C6", "C3"]))
    assert result.count == 6  # (p1..p8) ∩ (p1..p6)
    assert result.searches == 5  # C3 asked once although two criteria name it
    assert store.max_in_flight == 2
    for type_, query in store.requests:
        assert type_ == "Condition" and query["_elements"] == "subject" and query["_count"] == "1000"
    assert result.unresolved == 5  # one Group reference per search


async def test_pages_are_followed(store: Store, client: FhirClient) -> None:
    result = await CohortCounter(client, page_size=3).count(plan(["C10"]))
    assert result.count == 10 and result.pages == 4 and result.searches == 1  # 12 matches, 3 per page
    assert [q.get("_page", "1") for _, q in store.requests] == ["1", "2", "3", "4"]


async def test_the_first_failure_stops_the_other_searches(store: Store, client: FhirClient) -> None:
    store.fail_code = "C2"
    counter = CohortCounter(client, concurrency=1)
    with pytest.raises(FhirClientError) as caught:
        await counter.count(plan(["C2"], ["C3"], ["C4"], ["C5"]))
    assert caught.value.status == 500 and "index broken" in str(caught.value)
    await asyncio.sleep(0.1)
    assert len(store.requests) < 4  # the queued searches were cancelled, not sent
