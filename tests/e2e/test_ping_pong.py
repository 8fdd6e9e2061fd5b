"""Ping/pong across real networks of nodes: mailboxes and engines over mTLS on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from dsf_plugin_ping_pong import JAVA_CLASS_MAP, PLUGIN

from dsf_core.api import ProcessPlugin
from dsf_core.network import OrgSpec
from dsf_core.testing.network import Network

PING = "http://dsf.dev/bpe/Process/ping|1.0"
START_PING = "http://dsf.dev/fhir/StructureDefinition/task-start-ping|1.0"
ORGS = [OrgSpec("a.test", ("DIC",)), OrgSpec("b.test", ("DIC",)), OrgSpec("c.test", ("DIC",))]


def statuses(task: dict[str, Any]) -> dict[str, str]:
    """organisation identifier → ping-status code of a finished startPing Task."""
    out = {}
    for output in task.get("output", []):
        if output["type"]["coding"][0]["code"] != "ping-status":
            continue
        parts = {e["url"]: e for e in output["extension"][0]["extension"]}
        out[parts["organization-identifier"]["valueIdentifier"]["value"]] = output["valueCoding"]["code"]
    return out


async def ping(net: Network, org: str = "a.test", timeout: float = 30.0) -> dict[str, Any]:
    task = await net.post_task(org, net.start_task(org, PING, "startPing", profile=START_PING))
    return await net.wait_for_task(org, task["id"], timeout=timeout)


async def test_ping_reaches_every_other_organisation(tmp_path: Path) -> None:
    async with Network(tmp_path, organizations=ORGS, plugins=[PLUGIN]) as net:
        done = await ping(net)
        assert done["status"] == "completed"
        assert statuses(done) == {"b.test": "pong-received", "c.test": "pong-received"}
        # each pong side answered and completed its ping Task, with the Java pong-status output
        for org in ("b.test", "c.test"):
            pings = await net.search(org, "Task", {"status": "completed"})
            assert len(pings) == 1
            codes = [o["valueCoding"]["code"] for o in pings[0]["output"] if o["type"]["coding"][0]["code"] == "pong-status"]
            assert codes == ["pong-send"]
        # the pongs a.test received were completed too, and nothing is left in progress anywhere
        for org in net.identifiers:
            assert await net.search(org, "Task", {"status": "in-progress"}) == []
            assert await net.search(org, "Task", {"status": "failed"}) == []


async def test_ping_refused_by_the_receivers_activity_definition_is_not_allowed(tmp_path: Path) -> None:
    # c.test does not run pong: no ActivityDefinition authorises the ping Task there → 403
    async with Network(tmp_path, organizations=ORGS, plugins=[PLUGIN],
                       node_settings={"c.test": {"DSF_ENGINE_EXCLUDED_PROCESSES": "dsfdev_pong"}}) as net:
        done = await ping(net)
        assert statuses(done) == {"b.test": "pong-received", "c.test": "not-allowed"}
        error = [o for o in done["output"] if o["valueCoding"]["code"] == "not-allowed"][0]
        message = [e for e in error["extension"][0]["extension"] if e["url"] == "error-message"]
        assert message and "403" in message[0]["valueString"]


async def test_ping_to_a_stopped_organisation_is_not_reachable(tmp_path: Path) -> None:
    async with Network(tmp_path, organizations=ORGS, plugins=[PLUGIN]) as net:
        await net.stop_node("c.test")
        done = await ping(net)
        assert statuses(done) == {"b.test": "pong-received", "c.test": "not-reachable"}


async def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_engine_restarted_mid_process_finishes_it_and_catches_up(tmp_path: Path) -> None:
    async with Network(tmp_path, organizations=ORGS[:2], plugins=[PLUGIN]) as net:
        a, b = net.node("a.test"), net.node("b.test")
        await b.stop_engine()  # b's mailbox takes the ping, nobody answers yet
        task = await net.post_task("a.test", net.start_task("a.test", PING, "startPing", profile=START_PING))

        async def a_waits_for_pong() -> bool:
            engine = a.engine
            return engine is not None and await engine.store.next_due() is not None

        await wait_until(a_waits_for_pong)  # the instance is saved waiting at its event gateway (20 s timer)
        await a.stop_engine()
        await b.start_engine()  # b catches up: starts pong, sends the pong to a's mailbox

        async def pong_waits_at_a() -> bool:
            return len(await net.search("a.test", "Task", {"status": "requested"})) == 1

        await wait_until(pong_waits_at_a)
        await a.start_engine()  # resumes the instance from its database, catches the pong up
        done = await net.wait_for_task("a.test", task["id"])
        assert done["status"] == "completed"
        assert statuses(done) == {"b.test": "pong-received"}


async def test_java_models_run_with_a_class_map(tmp_path: Path, reference_dir: Path) -> None:
    java_bpe = reference_dir / "dsf-ping-pong-1.0.1.0" / "bpe"
    java = ProcessPlugin(
        name="java-ping-pong-models", version=PLUGIN.version, release_date=PLUGIN.release_date, package=PLUGIN.package,
        models=tuple(str(java_bpe / f) for f in ("ping.bpmn", "pong.bpmn", "ping-autostart.bpmn")),
        fhir_resources=PLUGIN.fhir_resources, class_map=JAVA_CLASS_MAP,
    )
    async with Network(tmp_path, organizations=ORGS, plugins=[java]) as net:
        done = await ping(net)
        assert statuses(done) == {"b.test": "pong-received", "c.test": "pong-received"}


@pytest.mark.parametrize("missing", ["b.test"])
async def test_ping_with_target_endpoints_search(tmp_path: Path, missing: str) -> None:
    async with Network(tmp_path, organizations=ORGS, plugins=[PLUGIN]) as net:
        search = "Endpoint?identifier=http://dsf.dev/sid/endpoint-identifier|c.test"
        inputs = [{"type": {"coding": [{"system": "http://dsf.dev/fhir/CodeSystem/ping", "code": "target-endpoints"}]},
                   "valueString": search}]
        task = await net.post_task("a.test", net.start_task("a.test", PING, "startPing", profile=START_PING, inputs=inputs))
        done = await net.wait_for_task("a.test", task["id"])
        assert statuses(done) == {"c.test": "pong-received"}


async def test_hello_world(tmp_path: Path) -> None:
    from dsf_plugin_hello_world import PLUGIN as HELLO

    async with Network(tmp_path, organizations=ORGS[:1], plugins=[HELLO]) as net:
        task = await net.post_task("a.test", net.start_task(
            "a.test", "http://dsf.dev/bpe/Process/helloWorld|1.0", "helloWorld",
            profile="http://dsf.dev/fhir/StructureDefinition/task-hello-world|1.0"))
        done = await net.wait_for_task("a.test", task["id"])
        assert done["status"] == "completed", done.get("output")


async def test_tasks_posted_while_the_engine_is_down_are_all_processed(tmp_path: Path) -> None:
    from dsf_plugin_hello_world import PLUGIN as HELLO

    async with Network(tmp_path, organizations=ORGS[:1], plugins=[HELLO]) as net:
        node = net.node("a.test")
        await node.stop_engine()
        posted = [
            await net.post_task("a.test", net.start_task(
                "a.test", "http://dsf.dev/bpe/Process/helloWorld|1.0", "helloWorld",
                profile="http://dsf.dev/fhir/StructureDefinition/task-hello-world|1.0"))
            for _ in range(25)  # more than one catch-up page
        ]
        await node.start_engine()
        for task in posted:
            done = await net.wait_for_task("a.test", task["id"])
            assert done["status"] == "completed"


async def test_a_task_that_can_neither_start_nor_correlate_fails_with_a_reason(tmp_path: Path) -> None:
    from dsf_core.api.tasks import BPMN_MESSAGE, organization_reference, parameter

    async with Network(tmp_path, organizations=ORGS[:2], plugins=[PLUGIN]) as net:
        pong = {
            "resourceType": "Task",
            "meta": {"profile": ["http://dsf.dev/fhir/StructureDefinition/task-pong|1.0"]},
            "instantiatesCanonical": PING, "status": "requested", "intent": "order",
            "authoredOn": "2026-11-23T10:00:00Z",
            "requester": organization_reference("b.test"),
            "restriction": {"recipient": [organization_reference("a.test")]},
            "input": [parameter(BPMN_MESSAGE, "message-name", "String", "pong"),
                      parameter(BPMN_MESSAGE, "business-key", "String", "no-such-instance"),
                      parameter(BPMN_MESSAGE, "correlation-key", "String", "no-such-branch")],
        }
        created = await net.client("b.test", on="a.test").create(pong)  # b's certificate on a's mailbox
        failed = await net.wait_for_task("a.test", created.id)
        assert failed["status"] == "failed"
        errors = [o["valueString"] for o in failed["output"] if o["type"]["coding"][0]["code"] == "error"]
        assert len(errors) == 1 and "Unable to correlate" in errors[0] and "no-such-instance" in errors[0]
