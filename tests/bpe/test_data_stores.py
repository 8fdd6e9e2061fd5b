"""Data stores configured in the node reach activities as FHIR clients with their auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsf_core.client import FhirClientError, classify
from dsf_core.network import OrgSpec, init_network
from dsf_core.node import Node
from dsf_core.settings import SettingsError, load_settings
from dsf_core.testing.mailbox import MailboxHarness

PATIENT = {"resourceType": "Patient", "name": [{"family": "Data"}]}


async def node_with_stores(tmp_path: Path, stores: str) -> tuple[Node, Any]:
    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("a.test", ("DIC",))])
    org = layout.organizations[0]
    org.config.write_text(org.config.read_text() + stores)
    node = Node(load_settings(org.config, environ={}), plugins=[])
    await node.start()
    return node, layout


@pytest.mark.parametrize("auth", ["basic", "bearer"])
async def test_a_data_store_with_basic_or_bearer_auth(tmp_path: Path, auth: str) -> None:
    overrides = ({"store_auth": "basic", "store_username": "reader", "store_password": "s3cret"} if auth == "basic"
                 else {"store_auth": "bearer", "store_bearer_token": "t0ken"})
    async with MailboxHarness(tmp_path / "store", mode="store", auth_overrides=overrides) as store:
        (tmp_path / "password").write_text("s3cret\n")
        credentials = ('username = "reader"\npassword_file = "' + str(tmp_path / "password") + '"\n' if auth == "basic"
                       else 'bearer_token = "t0ken"\n')
        node, _ = await node_with_stores(tmp_path, f"""
[data_stores.default]
base_url = "{store.base_url}"
auth = "{auth}"
{credentials}trust_server_cas = "{store.pki.ca_cert_path}"

[data_stores.wrong]
base_url = "{store.base_url}"
auth = "bearer"
bearer_token = "not-the-token"
trust_server_cas = "{store.pki.ca_cert_path}"
""")
        try:
            assert node.engine is not None
            fhir = node.engine.api.fhir
            created = await fhir.data_store().create(PATIENT)
            assert (await fhir.data_store("default").read("Patient", created.id))["name"][0]["family"] == "Data"
            with pytest.raises(FhirClientError) as refused:
                await fhir.data_store("wrong").search("Patient")
            assert refused.value.status == 401 and classify(refused.value) == "not-allowed"
            with pytest.raises(LookupError, match=r"no data store 'other'.*configured: default, wrong"):
                fhir.data_store("other")
        finally:
            await node.stop()


def test_data_store_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[organization]\nidentifier = "a.test"\n[data_stores.default]\nauth = "basic"\nbase_url = "https://x/fhir"\n')
    with pytest.raises(SettingsError, match="data_stores.default: auth = basic needs username and password"):
        load_settings(config, environ={})
    config.write_text('[organization]\nidentifier = "a.test"\n[data_stores.default]\nauth = "none"\n')
    with pytest.raises(SettingsError, match="data_stores.default: base_url"):
        load_settings(config, environ={})
    config.write_text('[organization]\nidentifier = "a.test"\n[data_stores.default]\nbase_url = "https://x/fhir"\nport = 1\n')
    with pytest.raises(SettingsError, match="unknown setting port"):
        load_settings(config, environ={})
    config.write_text('[organization]\nidentifier = "a.test"\n[data_stores.default]\nbase_url = "https://x/fhir"\nbearer_token = "tok-XYZ-123"\nauth = "bearer"\n')
    settings = load_settings(config, environ={})
    assert settings.data_stores["default"].auth == "bearer" and "tok-XYZ-123" not in repr(settings.data_stores["default"])
    assert settings.data_stores["default"].bearer_token == "tok-XYZ-123"
