"""The pytest plugin's ``dsf_network`` fixture, as a plugin author uses it (registered by entry point)."""

from __future__ import annotations

from typing import Any

from dsf_plugin_ping_pong import PLUGIN

from dsf_core.network import OrgSpec


async def test_dsf_network_fixture_runs_a_ping(dsf_network: Any) -> None:
    net = await dsf_network(organizations=[OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",))], plugins=[PLUGIN])
    task = await net.post_task("a.test", net.start_task(
        "a.test", "http://dsf.dev/bpe/Process/ping|1.0", "startPing",
        profile="http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"))
    done = await net.wait_for_task("a.test", task["id"])
    assert done["status"] == "completed"
    assert [o["valueCoding"]["code"] for o in done["output"]] == ["pong-received"]


def test_the_plugin_is_registered_by_entry_point(pytestconfig: Any) -> None:
    assert pytestconfig.pluginmanager.has_plugin("dsf")
