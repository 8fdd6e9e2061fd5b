"""The engine's store on both databases: Tasks handled once, instances saved, resumed after a restart."""

from __future__ import annotations

from pathlib import Path

from dsf_plugin_ping_pong import PLUGIN as PING_PONG
from dsf_plugin_hello_world import PLUGIN as HELLO

from dsf_core.testing.engine import EngineHarness


async def test_tasks_are_handled_once_and_instances_survive_restarts(tmp_path: Path, database_url: str) -> None:
    async with EngineHarness(tmp_path, plugins=[HELLO, PING_PONG], database_url=database_url) as h:
        done = await h.send(await h.task("dsfdev_helloWorld", "helloWorld"))
        assert done["status"] == "completed"
        # the same Task seen again (websocket push after a catch-up) starts nothing
        requested = {**done, "status": "requested"}
        await h.engine.handle_task(requested)
        await h.engine.idle()
        assert await h.store.count() == 1

        # an autostart instance waits on its timer across a restart, with its signal wait indexed
        await h.send(await h.task("dsfdev_pingAutostart", "startPingAutostart"))
        [waiting] = await h.instance_ids("dsfdev_pingAutostart", status="running")
        due = (await h.instance(waiting)).next_due
        assert due is not None
        assert await h.store.waiting_for("signal", "stop_dsfdev_pingAutostart_1.0") == [waiting]
        await h.restart()
        assert (await h.instance(waiting)).next_due == due
        stopped = await h.send(await h.task("dsfdev_pingAutostart", "stopPingAutostart"))
        assert stopped["status"] == "completed"
        assert (await h.instance(waiting)).status == "completed"
        assert await h.store.waiting_for("signal", "stop_dsfdev_pingAutostart_1.0") == []
