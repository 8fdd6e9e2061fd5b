"""CQL evaluation: Measure/Library preparation, the ``Prefer: respond-async`` protocol, report checks.

Blaze (the FHIR server with ``$evaluate-measure`` the sites run) stands outside our network, so
the protocol is tested against a small real aiohttp HTTP server started by this module that
implements just what the plugin uses of it: the transaction upload, the kick-off
``GET Measure/<id>/$evaluate-measure`` answering ``202`` + ``Content-Location``, a status URL
answering ``202`` (with or without ``Retry-After``) until the job is done, ``DELETE`` to cancel,
and the final answer as Blaze gives it (a ``batch-response`` Bundle holding the MeasureReport) or
in the other shapes the Java plugin accepts.  Time is an injected clock moved by the injected
sleep, so no test waits for real.  The "store without ``$evaluate-measure``" case runs against our
own data-store server, which has no such operation.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from dsf_core.api import FhirClient

from dsf_plugin_feasibility.evaluation import (
    EvaluationStore,
    FeasibilityQuery,
    StoreEvaluationError,
    Strategy,
    evaluate,
)
from dsf_plugin_feasibility.evaluation.async_fhir import AsyncRequestTimeout, get_respond_async
from dsf_plugin_feasibility.evaluation.cql import CqlEvaluationError, evaluate_cql, initial_population, prepare_cql_resources
from dsf_plugin_feasibility.evaluation.errors import FeasibilityResourceError

MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
CQL_TEXT = 'library "Retrieve" version \'1.0.0\'\nusing FHIR version \'4.0.0\'\ncontext Patient\ndefine InInitialPopulation:\n  Patient.gender = \'female\'\n'


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


MEASURE = {
    "resourceType": "Measure",
    "id": "hrp-measure-1",
    "meta": {"versionId": "1", "profile": ["http://medizininformatik-initiative.de/fhir/StructureDefinition/feasibility-measure"]},
    "url": "https://hrp.example.org/fhir/Measure/7b5a1f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
    "status": "active",
    "library": ["urn:uuid:5f2f3c1e-aaaa-bbbb-cccc-0123456789ab"],
    "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "cohort"}]},
    "group": [{"population": [{"code": {"coding": [{"system": MEASURE_POPULATION, "code": "initial-population"}]},
                               "criteria": {"language": "text/cql", "expression": "InInitialPopulation"}}]}],
}  # fmt: skip
LIBRARY = {
    "resourceType": "Library",
    "id": "hrp-library-1",
    "meta": {"versionId": "3", "tag": [{"system": "http://dsf.dev/fhir/CodeSystem/read-access-tag", "code": "ALL"}]},
    "url": "urn:uuid:5f2f3c1e-aaaa-bbbb-cccc-0123456789ab",
    "status": "active",
    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]},
    "content": [
        {"contentType": "application/json", "data": b64('{"version": "3", "inclusionCriteria": []}')},
        {"contentType": "text/cql", "data": b64(CQL_TEXT)},
    ],
}


def report(count: int | None = 42, code: str = "initial-population") -> dict[str, Any]:
    population: dict[str, Any] = {"code": {"coding": [{"system": MEASURE_POPULATION, "code": code}]}}
    if count is not None:
        population["count"] = count
    return {"resourceType": "MeasureReport", "status": "complete", "type": "summary", "group": [{"population": [population]}],
            "extension": [{"url": "https://samply.github.io/blaze/fhir/StructureDefinition/eval-duration",
                           "valueQuantity": {"value": 0.12, "unit": "s", "code": "s"}}]}  # fmt: skip


def batch_response(resource: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch-response", "entry": [{"resource": resource, "response": {"status": status}}]}


# --- the test server ------------------------------------------------------------------------


@dataclass
class Behaviour:
    pending_polls: int = 2  # status answers 202 this many times, then the result
    retry_after: list[str] = field(default_factory=list)  # per 202 status answer; "" = no header
    kickoff_retry_after: str = ""
    result: Any = field(default_factory=lambda: batch_response(report()))
    result_status: int = 200
    synchronous: bool = False  # ignore Prefer and answer at once
    location: str | None = None  # Content-Location override (e.g. another host)


@dataclass
class Recorded:
    transactions: list[dict[str, Any]] = field(default_factory=list)
    kickoffs: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (query, Prefer, Authorization)
    polls: int = 0
    deletes: list[str] = field(default_factory=list)


class EvaluateMeasureServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.recorded = Recorded()
        self.kickoff_seen = asyncio.Event()
        app = web.Application()
        app.router.add_post("/fhir", self.transaction)
        app.router.add_get("/fhir/Measure/{id}/$evaluate-measure", self.kickoff)
        app.router.add_get("/fhir/__async-status/{job}", self.status)
        app.router.add_delete("/fhir/__async-status/{job}", self.cancel)
        self.runner = web.AppRunner(app)
        self.base = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}/fhir"

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.recorded = Recorded()
        self.kickoff_seen = asyncio.Event()

    async def transaction(self, request: web.Request) -> web.Response:
        bundle = await request.json()
        self.recorded.transactions.append(bundle)
        return web.json_response({"resourceType": "Bundle", "type": "transaction-response", "entry": [
            {"response": {"status": "201 Created", "location": "Measure/m-1/_history/1"}},
            {"response": {"status": "201 Created", "location": "Library/l-1/_history/1"}},
        ]})  # fmt: skip

    async def kickoff(self, request: web.Request) -> web.Response:
        self.recorded.kickoffs.append((request.query_string, request.headers.get("Prefer"), request.headers.get("Authorization")))
        self.kickoff_seen.set()
        b = self.behaviour
        if b.synchronous or request.headers.get("Prefer") != "respond-async":
            return web.json_response(b.result, status=b.result_status)
        headers = {"Content-Location": b.location or f"{self.base}/__async-status/job-1"}
        if b.kickoff_retry_after:
            headers["Retry-After"] = b.kickoff_retry_after
        return web.Response(status=202, headers=headers)

    async def status(self, request: web.Request) -> web.Response:
        self.recorded.polls += 1
        b = self.behaviour
        if self.recorded.polls <= b.pending_polls:
            index = self.recorded.polls - 1
            value = b.retry_after[index] if index < len(b.retry_after) else ""
            return web.Response(status=202, headers={"Retry-After": value} if value else {})
        return web.json_response(b.result, status=b.result_status)

    async def cancel(self, request: web.Request) -> web.Response:
        self.recorded.deletes.append(request.path)
        return web.Response(status=202)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server() -> AsyncIterator[EvaluateMeasureServer]:
    served = EvaluateMeasureServer()
    await served.start()
    yield served
    await served.runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def client(server: EvaluateMeasureServer) -> AsyncIterator[FhirClient]:
    server.reset()
    async with aiohttp.ClientSession() as session:
        yield FhirClient(server.base, session=session, headers={"Authorization": "Bearer site-token"})


class Clock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds
        await asyncio.sleep(0)


# --- preparing Measure and Library ----------------------------------------------------------


def test_prepared_resources_are_clean_with_fixed_canonicals() -> None:
    measure, library = prepare_cql_resources(MEASURE, LIBRARY)
    assert "meta" not in measure and "meta" not in library and "id" not in measure and "id" not in library
    url = "https://hrp.example.org/fhir/Library/5f2f3c1e-aaaa-bbbb-cccc-0123456789ab"
    assert library["url"] == url and measure["library"] == [url]
    assert library["name"] == "5f2f3c1e-aaaa-bbbb-cccc-0123456789ab" and library["version"] == "1.0.0"
    [content] = library["content"]
    assert content["contentType"] == "text/cql"
    text = base64.b64decode(content["data"]).decode()
    assert text.splitlines()[0] == "library \"5f2f3c1e-aaaa-bbbb-cccc-0123456789ab\" version '1.0.0'"
    assert text.splitlines()[1:] == CQL_TEXT.splitlines()[1:]
    assert LIBRARY["meta"] and len(LIBRARY["content"]) == 2  # type: ignore[arg-type]  # the inputs are untouched


def test_canonicals_stay_when_urls_do_not_have_the_portal_shape_and_cql_is_required() -> None:
    library = {**LIBRARY, "url": "https://hrp.example.org/fhir/Library/lib"}
    _, prepared = prepare_cql_resources(MEASURE, library)
    assert prepared["url"] == "https://hrp.example.org/fhir/Library/lib" and "version" not in prepared
    without_cql = {**LIBRARY, "content": [LIBRARY["content"][0]]}  # type: ignore[index]
    with pytest.raises(FeasibilityResourceError, match="no content of type text/cql"):
        prepare_cql_resources(MEASURE, without_cql)


# --- the async protocol -----------------------------------------------------------------------


async def test_blaze_style_async_evaluation(server: EvaluateMeasureServer, client: FhirClient) -> None:
    server.behaviour.pending_polls = 9
    clock = Clock()
    result = await evaluate_cql(client, MEASURE, LIBRARY, sleep=clock.sleep, monotonic=clock)
    assert result.count == 42 and result.measure_id == "m-1" and result.polls == 10
    assert result.store_duration == "0.12 s"
    [(query, prefer, auth)] = server.recorded.kickoffs
    assert query == "periodStart=1900-01-01&periodEnd=2100-01-01&reportType=population"
    assert prefer == "respond-async" and auth == "Bearer site-token"
    assert clock.waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]  # exponential, 30 s cap
    [bundle] = server.recorded.transactions
    assert bundle["type"] == "transaction"
    assert [(e["request"]["method"], e["request"]["url"]) for e in bundle["entry"]] == [("POST", "Measure"), ("POST", "Library")]
    assert bundle["entry"][1]["resource"]["version"] == "1.0.0"
    assert server.recorded.deletes == []


async def test_retry_after_seconds_and_http_dates_are_obeyed(server: EvaluateMeasureServer, client: FhirClient) -> None:
    wall = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)
    in_seven = email.utils.format_datetime(wall + timedelta(seconds=7), usegmt=True)
    server.behaviour.kickoff_retry_after = "2"
    server.behaviour.retry_after = ["5", in_seven, "soon"]  # the unreadable one falls back to exponential
    server.behaviour.pending_polls = 3
    clock = Clock()
    result = await get_respond_async(
        client, "Measure/m-1/$evaluate-measure", timeout=300, sleep=clock.sleep, monotonic=clock, now=lambda: wall
    )
    assert result.status == 200 and result.polls == 4
    assert clock.waits == [2.0, 5.0, 7.0, 14.0]


async def test_a_store_answering_at_once_is_fine(server: EvaluateMeasureServer, client: FhirClient) -> None:
    server.behaviour.synchronous = True
    server.behaviour.result = {"resourceType": "Parameters", "parameter": [{"name": "return", "resource": report(7)}]}
    clock = Clock()
    result = await evaluate_cql(client, MEASURE, LIBRARY, sleep=clock.sleep, monotonic=clock)
    assert result.count == 7 and result.polls == 0 and clock.waits == []


async def test_the_deadline_cancels_the_job_with_delete(server: EvaluateMeasureServer, client: FhirClient) -> None:
    server.behaviour.pending_polls = 10_000
    clock = Clock()
    with pytest.raises(AsyncRequestTimeout) as caught:
        await evaluate_cql(client, MEASURE, LIBRARY, request_timeout=60, sleep=clock.sleep, monotonic=clock)
    assert "did not finish within 60 s" in str(caught.value) and "cancelled at" in str(caught.value)
    assert server.recorded.deletes == ["/fhir/__async-status/job-1"]
    assert clock.now - 1000.0 == pytest.approx(60.0)  # waited exactly up to the deadline, not beyond


async def test_cancelling_the_caller_cancels_the_job(server: EvaluateMeasureServer, client: FhirClient) -> None:
    server.behaviour.pending_polls = 10_000
    forever = asyncio.Event()

    async def never(_: float) -> None:
        await forever.wait()

    task = asyncio.ensure_future(evaluate_cql(client, MEASURE, LIBRARY, sleep=never))
    await asyncio.wait_for(server.kickoff_seen.wait(), 10)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.recorded.deletes == ["/fhir/__async-status/job-1"]


async def test_a_status_location_on_another_host_is_not_polled(server: EvaluateMeasureServer, client: FhirClient) -> None:
    server.behaviour.location = "http://elsewhere.example.org/__async-status/job-1"
    clock = Clock()
    with pytest.raises(Exception, match="not on the store's host"):
        await evaluate_cql(client, MEASURE, LIBRARY, sleep=clock.sleep, monotonic=clock)
    assert server.recorded.polls == 0


@pytest.mark.parametrize(
    ("result", "status", "fragment"),
    [
        ({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception", "diagnostics": "CQL compile error"}]}, 200,
         "OperationOutcome: CQL compile error"),
        (batch_response({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": "boom"}]}, "500"), 200,
         "failed with 500: boom"),
        ({"resourceType": "Parameters", "parameter": [{"name": "return", "resource": {"resourceType": "Patient"}}]}, 200, "Patient, not a MeasureReport"),
        ({"resourceType": "Bundle", "type": "batch-response", "entry": []}, 200, "not a MeasureReport"),
        ({"resourceType": "Observation"}, 200, "answered a Observation"),
        (batch_response({"resourceType": "MeasureReport", "status": "complete"}), 200, "has no group"),
        (batch_response({"resourceType": "MeasureReport", "group": [{}]}), 200, "has no population"),
        (batch_response({"resourceType": "MeasureReport", "group": [{"population": [{"count": 3}]}]}), 200, "has no code"),
        (batch_response(report(3, code="denominator")), 200, "is not http://terminology.hl7.org/CodeSystem/measure-population#initial-population"),
        (batch_response(report(None)), 200, "has no count"),
        ({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception", "diagnostics": "out of memory"}]}, 500,
         "500: GET"),
    ],
)
async def test_unusable_answers_are_errors(server: EvaluateMeasureServer, client: FhirClient, result: Any, status: int, fragment: str) -> None:
    server.behaviour.result = result
    server.behaviour.result_status = status
    server.behaviour.pending_polls = 0  # evaluate() sleeps for real: one 250 ms wait, then the answer
    store = EvaluationStore("blaze", client, Strategy.parse("CQL"))
    with pytest.raises(StoreEvaluationError) as caught:
        await evaluate(FeasibilityQuery(None, MEASURE, LIBRARY), [store])
    assert caught.value.store == "blaze" and fragment in caught.value.reason
    assert str(caught.value).startswith("data store 'blaze': ")


def test_initial_population_accepts_several_codings() -> None:
    multi = report(5)
    multi["group"][0]["population"][0]["code"]["coding"].insert(0, {"system": "http://example.org", "code": "x"})
    assert initial_population(multi) == 5
    with pytest.raises(CqlEvaluationError, match="negative"):
        initial_population(report(-1))


async def test_cql_stores_are_summed(server: EvaluateMeasureServer, client: FhirClient) -> None:
    server.behaviour.synchronous = True
    stores = [EvaluationStore("a", client, Strategy.CQL), EvaluationStore("b", client, Strategy.parse("cql"))]
    evaluation = await evaluate(FeasibilityQuery(None, MEASURE, LIBRARY), stores)
    assert evaluation.count == 84 and [s.store for s in evaluation.stores] == ["a", "b"]
    assert len(server.recorded.transactions) == 2


def test_strategy_names() -> None:
    assert Strategy.parse("CCDL") is Strategy.STRUCTURED_QUERY
    assert Strategy.parse(" Structured-Query ") is Strategy.STRUCTURED_QUERY
    assert Strategy.parse("cql") is Strategy.CQL
    with pytest.raises(ValueError, match="expected structured-query, ccdl or cql"):
        Strategy.parse("flare")
