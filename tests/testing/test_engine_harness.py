"""The engine harness as a plugin author uses it: a plugin deployed with its FHIR resources, in a few lines."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from dsf_plugin_hello_world import PLUGIN as HELLO

from dsf_core.testing.engine import EngineHarness, HarnessError, ManualClock, item_answer


async def test_a_plugin_runs_with_its_own_resources(tmp_path: Path) -> None:
    async with EngineHarness(tmp_path, plugin=HELLO) as h:
        done = await h.send(await h.task("dsfdev_helloWorld", "helloWorld"))
        assert done["status"] == "completed"
        assert done["meta"]["profile"] == ["http://dsf.dev/fhir/StructureDefinition/task-hello-world|1.0"]
        assert (await h.instance_of_task(done)).variables["greeting"] == "Hello local.test"

        start = await h.send(await h.task("dsfdev_helloUser", "helloUser"))
        [response] = await h.questionnaire_responses(status="in-progress")
        await h.restart()
        amended = await h.answer(response, {"name": "Ada", "approve": True, "cups-of-coffee": 2})
        assert (amended["status"], item_answer(amended, "cups-of-coffee")) == ("amended", 2)
        assert (await h.local.read("Task", start["id"]))["status"] == "completed"


async def test_what_the_harness_refuses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="class_map goes with models"):
        EngineHarness(tmp_path, plugin=HELLO, class_map={"x": object})
    async with EngineHarness(tmp_path, plugin=HELLO) as h:
        with pytest.raises(HarnessError, match="dsfdev_nothing: 0 deployed processes match"):
            await h.start("dsfdev_nothing")
        with pytest.raises(HarnessError, match="authorises message 'bye'"):
            await h.task("dsfdev_helloWorld", "bye")
