"""DataStoreServer: a real store-mode server on loopback with each auth, loaded with generated data."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from dsf_core import pki
from dsf_core.client import ClientFactory, FhirClientError
from dsf_core.data import Dataset, DatasetSpec, generate, transaction_bundle
from dsf_core.data import vocabulary as v
from dsf_core.errors import InvalidRequest
from dsf_core.testing.data_store import DataStoreServer

DATASET = generate(DatasetSpec(patients=30, seed=4))


def expected(dataset: Dataset, resource_type: str, code: str) -> int:
    return sum(1 for r in dataset.of_type(resource_type) if r["code"]["coding"][0]["code"] == code)


async def total(store: DataStoreServer, resource_type: str, params: dict[str, str] | None = None) -> int:
    bundle = await store.client().search(resource_type, {**(params or {}), "_summary": "count"})
    count: int = bundle["total"]
    return count


@pytest.mark.parametrize("auth", ["none", "basic", "bearer", "certificate"])
async def test_each_auth_admits_its_credentials_only(tmp_path: Path, auth: str) -> None:
    async with DataStoreServer(tmp_path, auth=auth) as store:  # type: ignore[arg-type]
        settings = store.settings()
        assert settings.base_url == store.base_url and settings.auth == auth
        assert settings.trust_server_cas == store.ca_cert
        assert (settings.client_certificate is not None) == (auth == "certificate")
        assert await store.load(DATASET, batch_size=7) == len(list(DATASET.resources()))
        assert await total(store, "Patient") == 30

        anonymous = ClientFactory.from_files(cafile=store.ca_cert, attempts=1)
        try:
            if auth == "none":
                assert (await anonymous.client(store.base_url).search("Patient"))["total"] == 30
            elif auth == "certificate":  # no client certificate: the handshake itself fails
                with pytest.raises((FhirClientError, aiohttp.ClientError, ssl.SSLError)):
                    await anonymous.client(store.base_url).search("Patient")
            else:
                wrong = {"Authorization": "Bearer wrong" if auth == "bearer" else "Basic d3Jvbmc6d3Jvbmc="}
                for headers in ({}, wrong):
                    with pytest.raises(FhirClientError) as refused:
                        await anonymous.client(store.base_url, headers=headers).search("Patient")
                    assert refused.value.status == 401
        finally:
            await anonymous.close()


async def test_certificate_auth_refuses_a_certificate_of_another_ca(tmp_path: Path) -> None:
    other = pki.DevPki.init(tmp_path / "other-ca").issue_organization("intruder.test")
    async with DataStoreServer(tmp_path / "store", auth="certificate") as store:
        factory = ClientFactory.from_files(cafile=store.ca_cert, cert_file=other.client.cert_path,
                                           key_file=other.client.key_path, attempts=1)
        try:
            with pytest.raises((FhirClientError, aiohttp.ClientError, ssl.SSLError)):
                await factory.client(store.base_url).search("Patient")
        finally:
            await factory.close()


async def test_loaded_data_is_searchable_and_counts_match_the_objects(tmp_path: Path) -> None:
    async with DataStoreServer(tmp_path) as store:
        await store.load(DATASET)
        for resource_type in ("Patient", "Encounter", "Condition", "Observation", "Procedure", "Medication",
                              "MedicationAdministration", "Specimen", "Consent"):
            assert await total(store, resource_type) == len(DATASET.of_type(resource_type)), resource_type
        for code in ("I10", "E11.9", "J45.9"):
            found = await total(store, "Condition", {"code": f"{v.ICD10GM}|{code}"})
            assert found == expected(DATASET, "Condition", code)
        found = await total(store, "Observation", {"code": f"{v.LOINC}|718-7"})
        assert found == expected(DATASET, "Observation", "718-7") > 0
        patient = DATASET.patients[3]
        stored = await store.client().read("Patient", patient["id"])
        assert stored["birthDate"] == patient["birthDate"] and stored["meta"]["versionId"] == "1"
        assert "versionId" not in patient["meta"]  # the caller's objects stay as generated


async def test_loading_twice_or_from_a_bundle_writes_versions_not_duplicates(tmp_path: Path) -> None:
    async with DataStoreServer(tmp_path) as store:
        bundle = transaction_bundle(DATASET.resources())
        assert await store.load(bundle, batch_size=250) == len(bundle["entry"])
        await store.load(DATASET.groups[:5])
        assert await total(store, "Patient") == 30
        assert (await store.client().read("Patient", DATASET.patients[0]["id"]))["meta"]["versionId"] == "2"
        assert (await store.client().read("Patient", DATASET.patients[9]["id"]))["meta"]["versionId"] == "1"


async def test_a_bad_entry_fails_its_batch_only_and_is_named(tmp_path: Path) -> None:
    async with DataStoreServer(tmp_path) as store:
        bundle = transaction_bundle(generate(DatasetSpec(patients=2, seed=1)).resources())
        bundle["entry"][-1]["resource"]["status"] = {"not": "a code"}
        bad_url = bundle["entry"][-1]["request"]["url"]
        with pytest.raises(InvalidRequest, match=rf"entry {len(bundle['entry']) - 1} \(PUT {bad_url}\): invalid"):
            await store.load(bundle, batch_size=len(bundle["entry"]) - 1)
        assert await total(store, "Patient") == 2  # the first batch (every entry but the last) stays
        assert await total(store, bad_url.split("/")[0], {"_id": bad_url.split("/")[1]}) == 0
        with pytest.raises(InvalidRequest, match="only PUT Type/id entries"):
            await store.load({"resourceType": "Bundle", "type": "transaction",
                              "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": {}}]})
        with pytest.raises(InvalidRequest, match="resource type Account is not served"):
            await store.load({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "PUT", "url": "Account/x"}, "resource": {"resourceType": "Account"}}]})


async def test_generated_resources_pass_the_store_over_http(tmp_path: Path) -> None:
    # As creates: the mailbox has no update-as-create, so PUT Type/id entries cannot go over HTTP.
    resources = list(generate(DatasetSpec(patients=8, seed=9)).resources())
    posts = [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]
    async with DataStoreServer(tmp_path, auth="basic") as store:
        response = await store.client().transaction({"resourceType": "Bundle", "type": "transaction", "entry": posts})
        assert [e["response"]["status"] for e in response["entry"]] == ["201 Created"] * len(resources)


async def test_settings_before_start_say_so(tmp_path: Path) -> None:
    store = DataStoreServer(tmp_path)
    with pytest.raises(RuntimeError, match="not started"):
        store.settings()
    with pytest.raises(ValueError, match="auth must be"):
        DataStoreServer(tmp_path, auth="kerberos")  # type: ignore[arg-type]
