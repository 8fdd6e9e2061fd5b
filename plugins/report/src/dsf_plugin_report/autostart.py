"""The DIC's loop ``medizininformatik-initiativede_reportAutostart``: a ``reportSendStart`` every interval.

Started by ``reportAutostartStart`` (inputs ``timer-interval``, default ``P7D``;
``first-execution``, a time of day; ``hrp-identifier``), it first stops any running loop (signal
``stop_medizininformatik-initiativede_reportAutostart_<a.b>``), then sends ``reportSendStart`` to
its own organisation — at once, or at the next ``first-execution`` in the node's time zone — and
again after every interval, until ``reportAutostartStop`` throws the same signal. The engine keeps
the instance's state bounded however long it loops.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, time, timedelta
from typing import Any

from dsf_core.api import FhirClientError, MessageSend, ProcessPluginApi, ServiceTask, Target, Variables, tasks

from dsf_plugin_report.codes import DEFAULT_TIMER_INTERVAL, FIRST_EXECUTION, HRP_IDENTIFIER, REPORT, TIMER_INTERVAL
from dsf_plugin_report.config import check_duration

__all__ = ["SetTimer", "StartSendReport", "next_first_execution"]

log = logging.getLogger("dsf.plugin.report")

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?$")  # FHIR time


def next_first_execution(now: datetime, at: str) -> datetime:
    """The next ``at`` (FHIR time, ``04:00:00``) in ``now``'s time zone: today, or tomorrow when already past."""
    match = _TIME.match(at)
    if match is None:
        raise ValueError(f"first-execution {at!r} is not a time of day like 04:00:00")
    wanted = time(int(match[1]), int(match[2]), min(int(match[3]), 59))
    first = datetime.combine(now.date(), wanted, tzinfo=now.tzinfo)
    return first if first >= now else first + timedelta(days=1)


class SetTimer(ServiceTask):
    """``reportTimerInterval``, and ``reportFirstExecution`` (+ ``reportFirstExecutionDelayed``); we are the target."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        interval = tasks.input_string(start, REPORT, TIMER_INTERVAL) or DEFAULT_TIMER_INTERVAL
        try:
            check_duration(interval)
            at = tasks.first_input(start, REPORT, FIRST_EXECUTION)
            first = next_first_execution(api.now().astimezone(), at) if isinstance(at, str) else None
        except ValueError as exc:
            raise ValueError(f"Task/{start.get('id')}: {exc}") from None
        variables.set("reportTimerInterval", interval)
        variables.set("reportFirstExecutionDelayed", first is not None)
        if first is not None:
            variables.set("reportFirstExecution", first.isoformat())
        log.info("report autostart %s: every %s, first %s", variables.business_key, interval,
                 first.isoformat() if first else "now")
        variables.set_target(Target(api.organization_identifier, api.endpoint_identifier, api.endpoint_url))


class StartSendReport(MessageSend):
    """``reportSendStart`` to ourselves (a new report process each time), forwarding ``hrp-identifier``.

    A refused or failed send is logged and the loop goes on to the next interval, so one outage of
    the local mailbox does not end a loop meant to run for years (the Java loop would end).
    """

    business_key_strategy = "new"

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        hrp = tasks.first_input(variables.start_task, REPORT, HRP_IDENTIFIER)
        return [tasks.parameter(REPORT, HRP_IDENTIFIER, "Reference", hrp)] if isinstance(hrp, dict) else []

    async def on_send_error(
        self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError
    ) -> None:
        log.warning("report autostart %s: reportSendStart not sent, next try in %s: %s", variables.business_key,
                    variables.get("reportTimerInterval"), error)
