"""Data stores in a network: node.toml tables written by set_data_stores, read by nodes through real TLS."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dsf_core.data import DatasetSpec, generate
from dsf_core.data import vocabulary as v
from dsf_core.network import NetworkError, OrgSpec, init_network, set_data_stores
from dsf_core.settings import DataStoreSettings, Secret, load_settings
from dsf_core.testing.data_store import DataStoreServer
from dsf_core.testing.network import Network

DIC_A = generate(DatasetSpec(patients=20, seed=1, id_prefix="dic-a"))
DIC_B = generate(DatasetSpec(patients=12, seed=2, id_prefix="dic-b"))


async def test_nodes_read_their_data_stores(tmp_path: Path) -> None:
    async with (
        DataStoreServer(tmp_path / "store-a", auth="basic") as store_a,
        DataStoreServer(tmp_path / "store-b", auth="certificate") as store_b,
    ):
        await store_a.load(DIC_A)
        await store_b.load(DIC_B)
        stores = {"a.test": {"default": store_a}, "b.test": {"default": store_b, "shared": store_a.settings()}}
        organizations = [OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",))]
        async with Network(tmp_path / "net", organizations=organizations, plugins=[], data_stores=stores) as net:
            fhir_a = net.node("a.test").engine.api.fhir  # type: ignore[union-attr]
            fhir_b = net.node("b.test").engine.api.fhir  # type: ignore[union-attr]
            assert (await fhir_a.data_store("default").search("Patient", {"_summary": "count"}))["total"] == 20
            hypertension = {"code": f"{v.ICD10GM}|I10", "_summary": "count"}
            expected = sum(1 for c in DIC_A.of_type("Condition") if c["code"]["coding"][0]["code"] == "I10")
            assert (await fhir_a.data_store().search("Condition", hypertension))["total"] == expected > 0
            patient = await fhir_b.data_store("default").read("Patient", "dic-b-3")
            assert patient["name"] == DIC_B.patients[2]["name"]
            assert (await fhir_b.data_store("shared").search("Patient", {"_summary": "count"}))["total"] == 20
            config = net.layout.organization("a.test").config  # type: ignore[union-attr]
            assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the basic-auth password

        # The same network started again with a store elsewhere: its node.toml follows.
        async with DataStoreServer(tmp_path / "store-c", auth="bearer") as store_c:
            await store_c.load(DIC_B)
            async with Network(tmp_path / "net", plugins=[], data_stores={"a.test": {"default": store_c}}) as net:
                fhir_a = net.node("a.test").engine.api.fhir  # type: ignore[union-attr]
                assert (await fhir_a.data_store().search("Patient", {"_summary": "count"}))["total"] == 12


@pytest.fixture
def config(tmp_path: Path) -> Path:
    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("a.test", ("DIC",))])
    return layout.organizations[0].config


def test_set_data_stores_round_trips_and_replaces(config: Path, tmp_path: Path) -> None:
    original = config.read_text()
    stores = {
        "default": DataStoreSettings("https://127.0.0.1:9/fhir", auth="basic", username="u", password=Secret("p w\"x"),
                                     trust_server_cas=tmp_path / "ca.crt"),
        "kds-2": DataStoreSettings("https://kds.example.org/fhir", auth="certificate",
                                   client_certificate=Path("relative/client.crt")),
    }
    set_data_stores(config, stores)
    loaded = load_settings(config, environ={}).data_stores
    assert loaded["default"] == stores["default"]
    assert loaded["kds-2"].client_certificate == Path("relative/client.crt").resolve()
    assert config.read_text().startswith(original.rstrip("\n"))

    set_data_stores(config, {"other": DataStoreSettings("https://x.example.org/fhir")})
    assert list(load_settings(config, environ={}).data_stores) == ["other"]
    set_data_stores(config, {})
    assert config.read_text() == original and load_settings(config, environ={}).data_stores == {}


def test_set_data_stores_refuses_what_would_not_load(config: Path) -> None:
    original = config.read_text()
    with pytest.raises(NetworkError, match="auth = basic needs username and password"):
        set_data_stores(config, {"default": DataStoreSettings("https://x/fhir", auth="basic", username="u")})
    with pytest.raises(NetworkError, match="data store name 'a b'"):
        set_data_stores(config, {"a b": DataStoreSettings("https://x/fhir")})
    assert config.read_text() == original
    config.write_text(original + '\n[data_stores.mine]\nbase_url = "https://x/fhir"\n')
    with pytest.raises(NetworkError, match="written by hand"):
        set_data_stores(config, {})


async def test_network_names_an_unknown_organisation(tmp_path: Path) -> None:
    net = Network(tmp_path, organizations=[OrgSpec("a.test", ("DIC",))], plugins=[],
                  data_stores={"z.test": {"default": DataStoreSettings("https://x/fhir")}})
    with pytest.raises(KeyError, match="'z.test' is not an organization"):
        await net.start()
    await net.stop()
