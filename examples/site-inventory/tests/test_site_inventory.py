"""Site inventory on a real network: nodes with mailbox and engine, mTLS on loopback.

``dsf_network`` is the pytest fixture dsf-py installs (no import needed): it starts the
organisations asked for with the plugins given and stops them when the test ends.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from dsf_core.network import OrgSpec
from dsf_core.testing.pytest_plugin import NetworkFactory

from site_inventory import PLUGIN

PROCESS = f"http://example.org/bpe/Process/siteInventory|{PLUGIN.resource_version}"
START_PROFILE = f"http://example.org/fhir/StructureDefinition/task-start-site-inventory|{PLUGIN.resource_version}"


def test_the_plugin_and_its_distribution_have_one_version() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == PLUGIN.version


async def test_a_start_task_runs_the_process_to_its_end(dsf_network: NetworkFactory) -> None:
    net = await dsf_network(organizations=[OrgSpec("a.test", ("DIC",))], plugins=[PLUGIN])
    task = await net.post_task("a.test", net.start_task("a.test", PROCESS, "startSiteInventory", profile=START_PROFILE))
    done = await net.wait_for_task("a.test", task["id"], "completed")
    assert done["status"] == "completed"
