"""The autostart loop in one real engine with a clock we move: interval, first execution, stop, restart by a new start,
and a state that does not grow however long it loops."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dsf_plugin_report import PLUGIN
from dsf_plugin_report.autostart import next_first_execution
from dsf_plugin_report.codes import HRP_IDENTIFIER, MII_PARENT, ORGANIZATION_IDENTIFIER, REPORT

from dsf_core.api import tasks
from dsf_core.testing.engine import EngineHarness

AUTOSTART = "medizininformatik-initiativede_reportAutostart"


def harness(tmp_path: Path) -> EngineHarness:
    return EngineHarness(tmp_path, plugin=PLUGIN, parent=MII_PARENT, roles=("DIC",))


def report_input(code: str, value_type: str, value: Any) -> dict[str, Any]:
    return tasks.parameter(REPORT, code, value_type, value)


async def send_starts(h: EngineHarness) -> list[dict[str, Any]]:
    """The ``reportSendStart`` Tasks the loop posted to our mailbox (the harness does not run them)."""
    return [t for t in await h.search("Task", {"status": "requested"}) if tasks.message_input(t, "message-name") == "reportSendStart"]


async def test_the_loop_reports_every_interval_for_years_in_a_state_that_does_not_grow(tmp_path: Path) -> None:
    hrp = {"type": "Organization", "identifier": {"system": ORGANIZATION_IDENTIFIER, "value": "hrp.test"}}
    async with harness(tmp_path) as h:
        start = await h.send(await h.task(AUTOSTART, "reportAutostartStart", inputs=[
            report_input("timer-interval", "String", "P7D"), report_input(HRP_IDENTIFIER, "Reference", hrp)]))
        assert start["status"] == "in-progress"
        [first] = await send_starts(h)
        assert tasks.first_input(first, REPORT, HRP_IDENTIFIER) == hrp
        assert first["meta"]["profile"] == ["http://medizininformatik-initiative.de/fhir/StructureDefinition/task-report-send-start|1.1"]
        view = await h.instance_of_task(start)
        assert view.next_due is not None and view.next_due - h.clock.now <= timedelta(days=7, milliseconds=1)
        sizes = {}
        for week in range(1, 105):  # two years
            h.clock.advance(days=7, seconds=1)
            assert await h.run_due_timers() == 1
            if week in (10, 104):
                sizes[week] = (await h.instance(view.id)).state_size
        # bounded: 94 more weeks add nothing per week (a few bytes of longer numbers, e.g. ids and instants, may vary)
        assert sizes[104] - sizes[10] < 64, sizes
        assert len(await send_starts(h)) == 105
        assert (await h.instance(view.id)).waiting() == ["intervalOrStop"]  # the interval timer or the stop signal


async def test_the_first_report_waits_for_the_first_execution_time_of_day(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        start = await h.send(await h.task(AUTOSTART, "reportAutostartStart", inputs=[report_input("first-execution", "Time", "04:00:00")]))
        view = await h.instance_of_task(start)
        expected = next_first_execution(h.clock.now.astimezone(), "04:00:00")
        assert view.next_due == expected and view.waiting() == ["firstExecutionOrStop"]
        assert await send_starts(h) == []
        h.clock.set(expected)
        await h.run_due_timers()
        assert len(await send_starts(h)) == 1
        assert (await h.instance(view.id)).next_due == expected + timedelta(days=7)  # the default interval, P7D


async def test_a_new_start_stops_the_running_loop_and_the_stop_message_ends_it(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        first = await h.send(await h.task(AUTOSTART, "reportAutostartStart"))
        second = await h.send(await h.task(AUTOSTART, "reportAutostartStart"))
        assert (await h.local.read("Task", first["id"]))["status"] == "completed"
        assert second["status"] == "in-progress"
        assert await h.instance_ids(AUTOSTART, status="running") == [(await h.instance_of_task(second)).id]
        stop = await h.send(await h.task(AUTOSTART, "reportAutostartStop"))
        assert stop["status"] == "completed"
        assert (await h.local.read("Task", second["id"]))["status"] == "completed"
        assert await h.instance_ids(AUTOSTART, status="running") == []
        # stopped before its first execution, too
        later = await h.send(await h.task(AUTOSTART, "reportAutostartStart", inputs=[report_input("first-execution", "Time", "23:59:59")]))
        await h.send(await h.task(AUTOSTART, "reportAutostartStop"))
        assert (await h.local.read("Task", later["id"]))["status"] == "completed"
        assert len(await send_starts(h)) == 2


async def test_a_bad_interval_fails_the_start_task_with_the_reason(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for interval, message in (("7 days", "'7 days' is not an ISO-8601 duration"), ("PT0S", "'PT0S' is no time at all")):
            failed = await h.send(await h.task(AUTOSTART, "reportAutostartStart", inputs=[
                report_input("timer-interval", "String", interval)]))
            assert failed["status"] == "failed"
            [error] = [o["valueString"] for o in failed["output"] if o["type"]["coding"][0]["code"] == "error"]
            assert error.startswith("setTimer (dsf_plugin_report.autostart.SetTimer) failed: ") and message in error
        assert await send_starts(h) == []
        # (a first-execution that is no time of day never gets here: the mailbox refuses the Task)


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-03-01T03:59:00+01:00", "2026-03-01T04:00:00+01:00"),
    ("2026-03-01T04:00:00+01:00", "2026-03-01T04:00:00+01:00"),
    ("2026-03-01T04:00:01+01:00", "2026-03-02T04:00:00+01:00"),
    ("2026-12-31T23:00:00+00:00", "2027-01-01T04:00:00+00:00"),
])
def test_next_first_execution(now: str, expected: str) -> None:
    assert next_first_execution(datetime.fromisoformat(now), "04:00:00") == datetime.fromisoformat(expected)
    assert next_first_execution(datetime(2026, 1, 1, tzinfo=timezone.utc), "04:00:00.500").hour == 4
