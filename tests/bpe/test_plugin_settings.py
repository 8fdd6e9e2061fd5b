"""A plugin's own config table: checked at node start, read by activities; node-scoped shared state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from dsf_plugin_hello_world import PLUGIN as HELLO

from dsf_core.network import OrgSpec, init_network
from dsf_core.node import Node
from dsf_core.settings import PluginSettings, SettingsError, load_settings
from dsf_core.testing.engine import EngineHarness


def _require_greeting(settings: PluginSettings) -> None:
    if not isinstance(settings.get("greeting"), str):
        raise SettingsError(f"{settings.where('greeting')} must be a string")


CHECKED = dataclasses.replace(HELLO, settings_name="hello", check_settings=_require_greeting)


async def test_a_node_refuses_to_start_with_a_setting_its_plugin_rejects(tmp_path: Path) -> None:
    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("a.test", ("DIC",))])
    config = layout.organizations[0].config
    config.write_text(config.read_text() + "\n[plugins.hello]\ngreeting = 3\n")
    node = Node(load_settings(config, environ={}), plugins=[CHECKED])
    with pytest.raises(SettingsError, match=rf"{config}: plugins.hello.greeting must be a string"):
        await node.start()
    await node.stop()

    config.write_text(config.read_text().replace("greeting = 3", 'greeting = "moin"'))
    node = Node(load_settings(config, environ={}), plugins=[CHECKED])
    await node.start()
    try:
        assert node.engine is not None
        api = node.engine.api
        assert api.plugin_settings("hello").get("greeting") == "moin"
        assert api.plugin_settings("other").table == {}
    finally:
        await node.stop()


async def test_shared_state_is_one_object_per_node(tmp_path: Path) -> None:
    async with EngineHarness(tmp_path / "a", plugin=CHECKED, plugin_settings={"hello": {"greeting": "hi"}}) as a, \
            EngineHarness(tmp_path / "b", plugin=CHECKED, plugin_settings={"hello": {"greeting": "ho"}},
                          organization="b.test") as b:
        first = a.engine.api.shared("counter", list)
        first.append(1)
        assert a.engine.api.shared("counter", list) == [1]
        assert b.engine.api.shared("counter", list) == []
        assert b.engine.api.plugin_settings("hello").get("greeting") == "ho"
    with pytest.raises(SettingsError, match="plugins.hello.greeting must be a string"):
        async with EngineHarness(tmp_path / "c", plugin=CHECKED):
            pass
