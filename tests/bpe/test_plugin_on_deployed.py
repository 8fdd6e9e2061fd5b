"""ProcessPlugin.on_deployed: called once the node deployed the plugin, with its active processes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from dsf_plugin_hello_world import PLUGIN as HELLO

from dsf_core.api import ProcessPluginApi
from dsf_core.bpe.deployment import DeploymentError
from dsf_core.network import OrgSpec, init_network
from dsf_core.node import Node
from dsf_core.settings import load_settings


async def test_the_hook_gets_the_api_and_the_active_processes(tmp_path: Path) -> None:
    calls: list[tuple[str, list[str]]] = []

    async def on_deployed(api: ProcessPluginApi, active: Sequence[str]) -> None:
        calls.append((api.organization_identifier, list(active)))
        bundle = await api.fhir.local().search("ActivityDefinition", {"url": "http://dsf.dev/bpe/Process/helloWorld"})
        assert bundle["total"] == 1  # the plugin's resources are on the mailbox by then

    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("a.test", ("DIC",))])
    settings = load_settings(layout.organizations[0].config, environ={"DSF_ENGINE_EXCLUDED_PROCESSES": "dsfdev_helloUser"})
    node = Node(settings, plugins=[dataclasses.replace(HELLO, on_deployed=on_deployed)])
    await node.start()
    try:
        assert calls == [("a.test", ["dsfdev_helloWorld"])]
    finally:
        await node.stop()


async def test_a_failing_hook_stops_the_start(tmp_path: Path) -> None:
    def on_deployed(api: ProcessPluginApi, active: Sequence[str]) -> None:
        raise RuntimeError("no key configured")

    layout = init_network(tmp_path / "net", parent="p.test", organizations=[OrgSpec("a.test", ("DIC",))])
    node = Node(load_settings(layout.organizations[0].config, environ={}),
                plugins=[dataclasses.replace(HELLO, on_deployed=on_deployed)])
    with pytest.raises(DeploymentError, match="plugin dsf-plugin-hello-world: on_deployed failed: no key configured"):
        await node.start()
    await node.stop()
