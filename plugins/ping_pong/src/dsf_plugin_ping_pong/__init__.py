"""DSF process plugin ping/pong: processes dsfdev_ping, dsfdev_pong and dsfdev_pingAutostart.

A connection test between DSF organizations, wire-compatible with the Java DSF ping/pong 1.0
(same process URLs, message names, Task profiles and codes). The BPMN models are in ``bpe/``,
the FHIR resources deployed with them in ``fhir/``.
"""

from __future__ import annotations

from datetime import date

from dsf_core.api import ProcessPlugin, SetCorrelationKey

from dsf_plugin_ping_pong import activities

__all__ = ["JAVA_CLASS_MAP", "PLUGIN"]

#: The Java ping/pong 1.0 models' ``camunda:class`` names bound to these activities, so the
#: models a Java site deploys run here unchanged.
JAVA_CLASS_MAP: dict[str, type] = {
    "dev.dsf.bpe.service.SelectPingTargets": activities.SelectPingTargets,
    "dev.dsf.bpe.message.SendPing": activities.SendPing,
    "dev.dsf.bpe.listener.SetCorrelationKeyListener": SetCorrelationKey,
    "dev.dsf.bpe.service.LogPong": activities.LogPong,
    "dev.dsf.bpe.service.LogNoResponse": activities.LogNoResponse,
    "dev.dsf.bpe.service.LogSendError": activities.LogSendError,
    "dev.dsf.bpe.service.SaveResults": activities.SaveResults,
    "dev.dsf.bpe.service.LogPing": activities.LogPing,
    "dev.dsf.bpe.service.SelectPongTarget": activities.SelectPongTarget,
    "dev.dsf.bpe.message.SendPong": activities.SendPong,
    "dev.dsf.bpe.service.SetTargetAndConfigureTimer": activities.SetTargetAndConfigureTimer,
    "dev.dsf.bpe.message.SendStartPing": activities.SendStartPing,
}

_SHARED = ("fhir/CodeSystem/ping.json", "fhir/CodeSystem/ping-status.json", "fhir/ValueSet/ping.json",
           "fhir/StructureDefinition/extension-ping-status.json")

PLUGIN = ProcessPlugin(
    name="dsf-plugin-ping-pong",
    version="1.0.0.0",
    release_date=date(2026, 11, 23),
    package=__name__,
    models=("bpe/ping.bpmn", "bpe/pong.bpmn", "bpe/ping-autostart.bpmn"),
    fhir_resources={
        "dsfdev_ping": (
            "fhir/ActivityDefinition/ping.json",
            "fhir/StructureDefinition/task-start-ping.json",
            "fhir/StructureDefinition/task-pong.json",
            "fhir/ValueSet/ping-status.json",
            "fhir/Task/task-start-ping.json",
            *_SHARED,
        ),
        "dsfdev_pong": (
            "fhir/ActivityDefinition/pong.json",
            "fhir/StructureDefinition/task-ping.json",
            "fhir/ValueSet/pong-status.json",
            *_SHARED,
        ),
        "dsfdev_pingAutostart": (
            "fhir/ActivityDefinition/ping-autostart.json",
            "fhir/StructureDefinition/task-start-ping-autostart.json",
            "fhir/StructureDefinition/task-stop-ping-autostart.json",
            "fhir/Task/task-start-ping-autostart.json",
            "fhir/Task/task-stop-ping-autostart.json",
            *_SHARED,
        ),
    },
    title="Ping/pong connection test",
    publisher="dsf-py",
)
