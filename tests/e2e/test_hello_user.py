"""hello_world's ``dsfdev_helloUser`` on a real node: a user task answered through a QuestionnaireResponse.

Only HTTP to the node's mailbox, as a local user with the organisation's certificate would do
in the mailbox UI: start the process with a Task, find the QuestionnaireResponse the engine
posted, answer it (``completed``), and see the engine take it (``amended``) and finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dsf_plugin_hello_world import PLUGIN as HELLO

from dsf_core.api import tasks
from dsf_core.network import OrgSpec
from dsf_core.testing.network import Network

HELLO_USER = "http://dsf.dev/bpe/Process/helloUser|1.0"
PROFILE = "http://dsf.dev/fhir/StructureDefinition/task-hello-user|1.0"
QUESTIONNAIRE = "http://dsf.dev/fhir/Questionnaire/hello-user|1.0"
ORG = "a.test"


async def wait_until(condition: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it gives something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s"
        await asyncio.sleep(0.05)
    return result


def answer_of(response: dict[str, Any], link_id: str) -> Any:
    for item in response.get("item", []):
        if item["linkId"] == link_id:
            return next((v for a in item.get("answer", []) for k, v in a.items() if k.startswith("value")), None)
    return None


def answered(response: dict[str, Any], answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The response as a user completes it: answers filled in, status completed, authored set."""
    items = [{**item, "answer": [answers[item["linkId"]]]} if item["linkId"] in answers else item
             for item in response["item"]]
    return {**response, "item": items, "status": "completed", "authored": "2026-11-23T10:00:00Z"}


async def test_hello_user_is_answered_through_its_questionnaire_response(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # (set_level also sets caplog's handler level: the lowest one last)
    caplog.set_level(logging.WARNING, logger="dsf.bpe.engine")
    caplog.set_level(logging.INFO, logger="dsf.plugin.hello_world")
    async with Network(tmp_path, organizations=[OrgSpec(ORG, ("DIC",))], plugins=[HELLO]) as net:
        client = net.client(ORG)
        start = await net.post_task(ORG, net.start_task(ORG, HELLO_USER, "helloUser", profile=PROFILE))

        async def in_progress() -> list[dict[str, Any]]:
            return await net.search(ORG, "QuestionnaireResponse", {"status": "in-progress"})

        [response] = await wait_until(in_progress, "the engine posts a QuestionnaireResponse")
        running = await client.read("Task", start["id"])
        assert running["status"] == "in-progress"
        business_key = tasks.message_input(running, "business-key")
        assert response["questionnaire"] == QUESTIONNAIRE
        assert response["author"]["identifier"]["value"] == ORG
        assert answer_of(response, "business-key") == business_key
        assert answer_of(response, "user-task-id")
        assert [i["linkId"] for i in response["item"]] == [
            "business-key", "user-task-id", "greeting-display", "name", "message", "cups-of-coffee",
            "favourite-date", "approve",
        ]
        assert all("answer" not in i for i in response["item"][2:])

        # a completed response nobody waits for: a warning, nothing else
        stray = {k: v for k, v in response.items() if k not in ("id", "meta")}
        stray["item"] = [{**stray["item"][0], "answer": [{"valueString": "unknown-business-key"}]}, *stray["item"][1:]]
        created = await client.create(stray, minimal=False)
        assert created.resource is not None
        stray_id = created.id
        await client.update(answered(created.resource, {"name": {"valueString": "Eve"}, "approve": {"valueBoolean": True}}))

        async def stray_warned() -> bool:
            return any("unknown-business-key" in r.getMessage() for r in caplog.records if r.name == "dsf.bpe.engine")

        await wait_until(stray_warned, "the engine warns about the stray response")
        assert (await client.read("QuestionnaireResponse", stray_id))["status"] == "completed"

        # the engine restarts while the user thinks
        node = net.node(ORG)
        await node.stop_engine()
        await node.start_engine()

        await client.update(answered(response, {
            "name": {"valueString": "Ada"}, "message": {"valueString": "hello from the test"},
            "cups-of-coffee": {"valueInteger": 3}, "approve": {"valueBoolean": True},
        }))
        done = await net.wait_for_task(ORG, start["id"])
        assert done["status"] == "completed", done.get("output")
        amended = await client.read("QuestionnaireResponse", response["id"])
        assert amended["status"] == "amended"
        assert answer_of(amended, "name") == "Ada"
        logged = [r.getMessage() for r in caplog.records if r.name == "dsf.plugin.hello_world"]
        assert logged == ["the user answered {'greeting-display': [], 'name': ['Ada'], "
                          "'message': ['hello from the test'], 'cups-of-coffee': [3], 'favourite-date': [], "
                          "'approve': [True]}"]
        assert await net.search(ORG, "QuestionnaireResponse", {"status": "in-progress"}) == []
