"""A third-party FHIR client, fhirpy (aiohttp underneath), against the mailbox over mTLS.

fhirpy passes ``aiohttp_config`` on to every ``session.request``, so the organisation's
client certificate goes in as ``{"ssl": ssl_context}``.  It sends ``Accept:
application/fhir+json`` and ``Content-Type: application/json``, pages by following
``Bundle.link[next]`` and maps 401/403/404/410/412 to its own exceptions.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ForbiddenError, OperationOutcome, ResourceNotFound

from dsf_core.settings import Secret
from dsf_core.testing.mailbox import MailboxHarness
from tests.compat.helpers import TAG_ALL, TAG_LOCAL


class CountingClient(AsyncFHIRClient):
    """fhirpy's client, counting the searches it runs (one per page)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetches: list[tuple[str, Any]] = []

    async def _fetch_resource(self, path: Any, params: Any = None) -> Any:
        self.fetches.append((path, params))
        return await super()._fetch_resource(path, params)  # type: ignore[no-untyped-call]


def client(mb: MailboxHarness, identifier: str = "local.test", **kwargs: Any) -> CountingClient:
    return CountingClient(mb.url(), aiohttp_config={"ssl": mb.ssl_context(identifier)}, **kwargs)


def issue_code(error: BaseException) -> str:
    """The first issue code of the OperationOutcome fhirpy carries in its exception."""
    outcome = getattr(error, "resource", None)
    if outcome is None:  # AuthorizationError / ForbiddenError / ResourceNotFound carry the response text
        outcome = orjson.loads(str(error))
    assert outcome["resourceType"] == "OperationOutcome"
    return str(outcome["issue"][0]["code"])


def meta(dsf: bool) -> dict[str, Any]:
    return {"meta": {"tag": [TAG_ALL]}} if dsf else {}


async def crud_and_history(fhir: CountingClient, *, dsf: bool) -> None:
    system = f"urn:fhirpy:{uuid.uuid4().hex}"
    patient = fhir.resource(
        "Patient", **meta(dsf), identifier=[{"system": system, "value": "p1"}], name=[{"family": "Müller", "given": ["Erika"]}]
    )
    await patient.save()  # POST
    assert patient.id
    assert patient["meta"]["versionId"] == "1"
    if dsf:
        assert patient["meta"]["profile"] == ["http://dsf.dev/fhir/StructureDefinition/patient"]
        assert patient["meta"]["tag"] == [TAG_ALL]

    read = await fhir.get("Patient", patient.id)
    assert read["name"][0]["family"] == "Müller"
    by_reference = await fhir.reference("Patient", patient.id).to_resource()
    assert by_reference["id"] == patient.id

    patient["active"] = True
    patient["birthDate"] = "1970-01-31"
    await patient.save()  # PUT Patient/id
    assert patient["meta"]["versionId"] == "2"
    assert (await fhir.get("Patient", patient.id))["birthDate"] == "1970-01-31"

    found = await fhir.resources("Patient").search(identifier=f"{system}|p1").fetch_all()
    assert [p.id for p in found] == [patient.id]
    assert (await fhir.resources("Patient").search(identifier=f"{system}|p1").get()).id == patient.id
    assert await fhir.resources("Patient").search(identifier=f"{system}|").count() == 1
    assert await fhir.resources("Patient").search(family="müll").count() >= 1  # string: case-insensitive prefix

    # Conditional create (If-None-Exist) finds it: 200, not 201.  fhirpy's get_or_create() sends the
    # condition as query parameters of the POST instead (an Aidbox convention), which FHIR servers,
    # this one and Java's included, do not read; so the header goes in through fhirpy's request layer.
    duplicate = {"resourceType": "Patient", **meta(dsf), "identifier": [{"system": system, "value": "p1"}]}
    existing, status = await fhir._do_request(
        "post", "Patient", duplicate, extra_headers={"If-None-Exist": f"identifier={system}|p1"}, returning_status=True
    )
    assert (existing["id"], status) == (patient.id, 200)
    # Conditional update by identifier updates it.
    replacement = fhir.resource("Patient", **meta(dsf), identifier=[{"system": system, "value": "p1"}], gender="female")
    updated, created = await fhir.resources("Patient").search(identifier=f"{system}|p1").update(replacement)
    assert (updated.id, created) == (patient.id, False)
    assert updated["meta"]["versionId"] == "3"

    history = await patient.execute("_history", method="get")
    assert history["resourceType"] == "Bundle"
    assert history["type"] == "history"
    assert history["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    first = await fhir.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert "active" not in first

    await patient.delete()  # type: ignore[no-untyped-call]
    with pytest.raises(ResourceNotFound) as gone:  # 410 Gone
        await fhir.get("Patient", patient.id)
    assert issue_code(gone.value) == "deleted"
    assert await fhir.resources("Patient").search(identifier=f"{system}|p1").fetch_all() == []
    history = await fhir.execute(f"Patient/{patient.id}/_history", method="get")
    assert history["total"] == 4
    with pytest.raises(ResourceNotFound) as missing:  # 404
        await fhir.get("Patient", str(uuid.uuid4()))
    assert issue_code(missing.value) == "not-found"


async def paging(fhir: CountingClient, *, dsf: bool) -> None:
    system = f"urn:fhirpy:paging:{uuid.uuid4().hex}"
    expected = set()
    for i in range(25):
        patient = fhir.resource("Patient", **meta(dsf), identifier=[{"system": system, "value": f"{i:02d}"}])
        await patient.create()
        expected.add(patient.id)

    search = fhir.resources("Patient").search(identifier=f"{system}|").limit(10)
    first_page = await search.fetch_raw()
    assert first_page["total"] == 25
    assert len(first_page["entry"]) == 10
    assert any(link["relation"] == "next" for link in first_page["link"])

    fhir.fetches.clear()
    ids = [p.id async for p in search]
    assert len(fhir.fetches) == 3  # pages of 10, 10 and 5, by following Bundle.link[next]
    assert len(ids) == 25
    assert set(ids) == expected
    assert await search.count() == 25

    sorted_ids = [p["identifier"][0]["value"] for p in await search.sort("-identifier").fetch_all()]
    assert len(sorted_ids) == 25


@pytest.mark.parametrize("mode", ["dsf", "store"])
async def test_fhirpy_crud_search_history_delete(tmp_path: Path, database_url: str, mode: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url, mode=mode) as mb:
        await crud_and_history(client(mb), dsf=mode == "dsf")


@pytest.mark.parametrize("mode", ["dsf", "store"])
async def test_fhirpy_paging_fetches_every_page(tmp_path: Path, database_url: str, mode: str) -> None:
    async with MailboxHarness(tmp_path, database_url=database_url, mode=mode) as mb:
        await paging(client(mb), dsf=mode == "dsf")


async def test_fhirpy_sees_dsf_rules(tmp_path: Path) -> None:
    async with MailboxHarness(tmp_path) as mb:
        local = client(mb)
        # DSF mode: a Patient without read-access tag violates a rule (403 invariant).
        with pytest.raises(ForbiddenError) as error:
            await local.resource("Patient", name=[{"family": "Untagged"}]).save()
        assert issue_code(error.value) == "invariant"

        # A LOCAL-tagged Patient is the local organisation's; the remote sees none of it.
        private = local.resource("Patient", meta={"tag": [TAG_LOCAL]}, name=[{"family": "Local"}])
        await private.save()
        public = local.resource("Patient", meta={"tag": [TAG_ALL]}, name=[{"family": "Everyone"}])
        await public.save()
        remote = client(mb, "remote.test")
        assert [p.id for p in await remote.resources("Patient").fetch_all()] == [public.id]
        assert await remote.resources("Patient").count() == 1
        with pytest.raises(ForbiddenError) as error:
            await remote.get("Patient", private.id)
        assert issue_code(error.value) == "forbidden"
        with pytest.raises(ForbiddenError) as error:  # remotes may only create Tasks
            await remote.resource("Patient", meta={"tag": [TAG_ALL]}).save()
        assert issue_code(error.value) == "forbidden"

        # Not allow-listed: 401.
        with pytest.raises(AuthorizationError) as unauthorized:
            await client(mb, "unknown.test").resources("Patient").fetch()
        assert issue_code(unauthorized.value) == "login"

        # PATCH is not part of the DSF API (neither in Java): 405 with an OperationOutcome.
        with pytest.raises(OperationOutcome) as outcome:
            await local.patch("Patient", public.id, active=False)
        assert issue_code(outcome.value) == "not-supported"


async def test_fhirpy_store_mode_clinical_data_and_basic_auth(tmp_path: Path) -> None:
    auth = {"store_auth": "basic", "store_username": "etl", "store_password": Secret("s3cret")}
    async with MailboxHarness(tmp_path, mode="store", auth_overrides=auth) as mb:
        token = "Basic " + base64.b64encode(b"etl:s3cret").decode()
        fhir = client(mb, authorization=token)
        patient = fhir.resource("Patient", name=[{"family": "Store"}])
        await patient.save()
        assert "profile" not in dict(patient).get("meta", {})  # no DSF default profile in data-store mode
        observation = fhir.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
            subject=patient.to_reference(),
            valueQuantity={"value": 37.5, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
        )
        await observation.save()
        found = await fhir.resources("Observation").search(subject=f"Patient/{patient.id}").fetch_all()
        assert [o.id for o in found] == [observation.id]
        assert found[0]["valueQuantity"]["value"] == 37.5
        reference = await found[0]["subject"].to_resource()
        assert reference.id == patient.id

        with pytest.raises(AuthorizationError) as error:
            await client(mb, authorization="Basic " + base64.b64encode(b"etl:wrong").decode()).get("Patient", patient.id)
        assert issue_code(error.value) == "login"
        with pytest.raises(AuthorizationError) as error:
            await client(mb).get("Patient", patient.id)
        assert issue_code(error.value) == "login"
