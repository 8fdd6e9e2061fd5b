"""EngineHarness with the local organisation in a given parent and roles; Network with a test's engine clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dsf_plugin_hello_world import PLUGIN as HELLO
from dsf_plugin_ping_pong import PLUGIN as PING_PONG

from dsf_core.network import OrgSpec
from dsf_core.testing.engine import EngineHarness, ManualClock
from dsf_core.testing.network import Network


async def test_the_harness_organisation_is_a_member_of_the_parent_with_the_roles(tmp_path: Path) -> None:
    async with EngineHarness(tmp_path, plugin=HELLO, parent="consortium.test", roles=("DIC", "HRP")) as h:
        members = await h.engine.api.organizations.members("consortium.test", role="HRP")
        assert [m["identifier"][0]["value"] for m in members] == ["local.test"]
        assert await h.engine.api.organizations.members("parent.test") == []


async def test_a_network_node_runs_on_the_clock_it_is_given(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC) - timedelta(days=3))
    async with Network(tmp_path, organizations=[OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",))],
                       plugins=[PING_PONG], clocks={"a.test": clock}) as net:
        a, b = net.node("a.test").engine, net.node("b.test").engine
        assert a is not None and b is not None
        assert a.api.now() == clock.now
        clock.advance(days=1)
        assert a.api.now() == clock.now
        assert abs(b.api.now() - datetime.now(UTC)) < timedelta(minutes=1)
