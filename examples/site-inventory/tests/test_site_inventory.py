"""The site inventory on real nodes (two organisations, mTLS on loopback) and in one engine with a clock
the test moves (timers of minutes in a test of milliseconds).

``dsf_network`` is the pytest fixture dsf-py installs (no import needed): it starts the
organisations asked for with the plugins given and stops them when the test ends.
``EngineHarness`` runs one organisation's engine and mailbox; nothing happens unless the test
hands it a Task or moves the clock.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dsf_core.api import PluginSettings, SettingsError, tasks
from dsf_core.network import OrgSpec
from dsf_core.testing.engine import EngineHarness
from dsf_core.testing.pytest_plugin import NetworkFactory

from site_inventory import PLUGIN
from site_inventory.activities import CODE_SYSTEM, STATUS
from site_inventory.settings import check_settings

VERSION = PLUGIN.resource_version
PROCESS = f"http://example.org/bpe/Process/siteInventory|{VERSION}"
START_PROFILE = f"http://example.org/fhir/StructureDefinition/task-start-site-inventory|{VERSION}"
ORGS = [OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",))]


def ask(organization: str) -> list[dict[str, Any]]:
    """The start Task's input naming the organisation to ask."""
    return [tasks.parameter(CODE_SYSTEM, "organization", "Reference", tasks.organization_reference(organization))]


def result(task: dict[str, Any]) -> tuple[str, list[str]]:
    """(status code, processes) from the outputs of a finished start Task."""
    [status] = [o["valueCoding"] for o in outputs(task, "status")]
    assert status["system"] == STATUS
    return status["code"], [o["valueString"] for o in outputs(task, "process")]


def outputs(task: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [o for o in task.get("output", []) if o["type"]["coding"] == [{"system": CODE_SYSTEM, "code": code}]]


def test_the_plugin_and_its_distribution_have_one_version() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == PLUGIN.version


# ----------------------------------------------------------------------------- two real nodes


async def test_one_organisation_learns_which_processes_another_runs(dsf_network: NetworkFactory) -> None:
    net = await dsf_network(organizations=ORGS, plugins=[PLUGIN])
    start = net.start_task("a.test", PROCESS, "startSiteInventory", profile=START_PROFILE, inputs=ask("b.test"))
    task = await net.post_task("a.test", start)
    done = await net.wait_for_task("a.test", task["id"], "completed")
    assert result(done) == ("answer-received",
                            [f"exampleorg_siteInventoryAnswer|{VERSION}", f"exampleorg_siteInventory|{VERSION}"])
    # b.test's answer process ended too: the request it received is completed
    [request] = await net.search("b.test", "Task", {"status": "completed"})
    assert tasks.message_input(request, "message-name") == "siteInventoryRequest"


async def test_an_organisation_without_the_answer_process_refuses_the_request(dsf_network: NetworkFactory) -> None:
    # Without the process, b.test's mailbox has no ActivityDefinition authorising the request: 403
    net = await dsf_network(organizations=ORGS, plugins=[PLUGIN],
                            node_settings={"b.test": {"DSF_ENGINE_EXCLUDED_PROCESSES": "exampleorg_siteInventoryAnswer"}})
    start = net.start_task("a.test", PROCESS, "startSiteInventory", profile=START_PROFILE, inputs=ask("b.test"))
    done = await net.wait_for_task("a.test", (await net.post_task("a.test", start))["id"], "completed")
    assert result(done) == ("not-allowed", [])


# ----------------------------------------------------------------------------- one engine, a moved clock


async def test_no_answer_within_the_answer_timeout_is_answer_missing(tmp_path: Path) -> None:
    async with EngineHarness(tmp_path, plugin=PLUGIN,
                             plugin_settings={"site_inventory": {"answer_timeout": "PT10M"}}) as h:
        # local.test asks itself; the harness delivers no Task by itself, so the request waits unanswered
        task = await h.send(await h.task("exampleorg_siteInventory", "startSiteInventory", inputs=ask("local.test")))
        assert task["status"] == "in-progress"
        instance = await h.instance_of_task(task)
        assert instance.waiting() == ["AnswerTimeout", "ReceiveAnswer"]
        assert instance.next_due == h.clock.now + timedelta(minutes=10)  # the setting, not the default PT5M
        h.clock.advance(minutes=10)
        await h.run_due_timers()
        done = await h.local.read("Task", task["id"])
        assert done["status"] == "completed"
        assert result(done) == ("answer-missing", [])


async def test_the_harness_delivers_request_and_answer_when_asked(tmp_path: Path) -> None:
    async with EngineHarness(tmp_path, plugin=PLUGIN) as h:
        task = await h.send(await h.task("exampleorg_siteInventory", "startSiteInventory", inputs=ask("local.test")))
        # the catch-up a node runs at start, until nothing is left: the request starts the answer process,
        # whose answer (posted meanwhile) then reaches the waiting instance
        assert await h.deliver_requested() == 2
        done = await h.local.read("Task", task["id"])
        assert result(done) == ("answer-received",
                                [f"exampleorg_siteInventoryAnswer|{VERSION}", f"exampleorg_siteInventory|{VERSION}"])


async def test_an_unknown_organisation_takes_the_error_boundary_event(tmp_path: Path) -> None:
    async with EngineHarness(tmp_path, plugin=PLUGIN) as h:
        task = await h.send(await h.task("exampleorg_siteInventory", "startSiteInventory", inputs=ask("nobody.test")))
        assert task["status"] == "completed"
        assert result(task) == ("unknown-organization", [])


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("table", "message"), [
    ({"answer_timeout": "5 minutes"}, "node.toml: plugins.site_inventory.answer_timeout must be an ISO-8601 duration"),
    ({"answer_timout": "PT5M"}, "node.toml: plugins.site_inventory.answer_timout is not a setting of this plugin"),
])
def test_a_wrong_setting_is_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{message}"):
        check_settings(PluginSettings("site_inventory", table, "node.toml"))
    check_settings(PluginSettings("site_inventory", {"answer_timeout": "PT30S"}, "node.toml"))
