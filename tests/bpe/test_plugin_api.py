"""The providers activities get as ``api``: organisations, endpoints and targets from the allow list."""

from __future__ import annotations

from pathlib import Path

from dsf_core.network import OrgSpec
from dsf_core.testing.network import Network

ORGS = [OrgSpec("hrp.test", ("HRP",)), OrgSpec("dic-1.test", ("DIC",)), OrgSpec("dic-2.test", ("DIC", "DMS"))]


async def test_providers_answer_from_the_allow_list(tmp_path: Path) -> None:
    async with Network(tmp_path, organizations=ORGS, parent="p.test", plugins=[]) as net:
        engine = net.node("hrp.test").engine
        assert engine is not None
        api = engine.api

        targets = await api.targets.members("p.test", "DIC")
        assert [t.organization_identifier for t in targets] == ["dic-1.test", "dic-2.test"]
        assert [t.endpoint_url for t in targets] == [net.layout.organization(i).base_url  # type: ignore[union-attr]
                                                     for i in ("dic-1.test", "dic-2.test")]
        keys = {t.correlation_key for t in targets}
        assert len(keys) == 2 and None not in keys
        assert [t.organization_identifier for t in await api.targets.members("p.test", "DMS")] == ["dic-2.test"]
        assert await api.targets.members("other.test") == type(targets)()
        plain = await api.targets.members("p.test", correlation_keys=False)
        assert {t.organization_identifier for t in plain} == {"dic-1.test", "dic-2.test"}
        assert all(t.correlation_key is None for t in plain)

        # the local organisation is left out unless asked for
        dic_api = net.node("dic-1.test").engine.api  # type: ignore[union-attr]
        assert [t.organization_identifier for t in await dic_api.targets.members("p.test", "DIC")] == ["dic-2.test"]
        both = await dic_api.targets.members("p.test", "DIC", exclude_local=False)
        assert [t.organization_identifier for t in both] == ["dic-1.test", "dic-2.test"]

        members = await api.organizations.members("p.test", "HRP")
        assert [m["identifier"][0]["value"] for m in members] == ["hrp.test"]
        remote = sorted(o["identifier"][0]["value"] for o in await api.organizations.remote())
        assert remote == ["dic-1.test", "dic-2.test"]
        local = await api.endpoints.local()
        assert local is not None and local["address"] == api.endpoint_url
        endpoint = await api.endpoints.by_identifier("dic-2.test")
        assert endpoint is not None and endpoint["address"] == net.layout.organization("dic-2.test").base_url  # type: ignore[union-attr]
        assert await api.endpoints.by_identifier("nobody.test") is None
        target = await api.targets.of_organization("dic-1.test", correlation_key="ck")
        assert target is not None and target.correlation_key == "ck" and target.endpoint_identifier == "dic-1.test"
