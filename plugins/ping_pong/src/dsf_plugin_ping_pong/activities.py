"""The activities of ping/pong: who to ping, sending, recording each answer, the results.

Status codes and outputs are those of the Java ping/pong 1.0 plugin, so a start Task looks
the same whichever implementation ran it: one ``ping-status`` output per target on the
``startPing`` Task (CodeSystem ``http://dsf.dev/fhir/CodeSystem/ping-status``: ``pong-received``,
``pong-missing``, ``not-allowed``, ``not-reachable``) with the extension saying which
organisation, endpoint and correlation key it is about.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from dsf_core.api import (
    BpmnError,
    FhirClientError,
    MessageSend,
    ProcessPluginApi,
    ServiceTask,
    Target,
    Targets,
    Variables,
    classify,
    tasks,
)

log = logging.getLogger("dsf.plugin.ping_pong")

PING = "http://dsf.dev/fhir/CodeSystem/ping"
PING_STATUS = "http://dsf.dev/fhir/CodeSystem/ping-status"
EXT_PING_STATUS = "http://dsf.dev/fhir/StructureDefinition/extension-ping-status"
ENDPOINT_IDENTIFIER = "http://dsf.dev/sid/endpoint-identifier"
ORGANIZATION_IDENTIFIER = "http://dsf.dev/sid/organization-identifier"


def _status_extension(target: Target, error: str | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"url": "correlation-key", "valueString": target.correlation_key or ""},
        {"url": "organization-identifier",
         "valueIdentifier": {"system": ORGANIZATION_IDENTIFIER, "value": target.organization_identifier}},
    ]
    if target.endpoint_identifier:
        parts.append({"url": "endpoint-identifier",
                      "valueIdentifier": {"system": ENDPOINT_IDENTIFIER, "value": target.endpoint_identifier}})
    if error:
        parts.append({"url": "error-message", "valueString": error})
    return [{"url": EXT_PING_STATUS, "extension": parts}]


# ----------------------------------------------------------------------------- ping


class SelectPingTargets(ServiceTask):
    """Every remote organisation's active endpoint (or those of the start Task's ``target-endpoints`` search).

    One search with the managing organisations included; an endpoint counts when its
    organisation is active, is not us, and its address is not our own.
    """

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        query = tasks.input_string(variables.start_task, PING, "target-endpoints") or "Endpoint?status=active"
        path, _, raw = query.partition("?")
        if path.rsplit("/", 1)[-1] != "Endpoint":
            raise BpmnError("invalid_target_endpoints", f"target-endpoints {query!r} is not an Endpoint search")
        params = [*parse_qsl(raw, keep_blank_values=True), ("_include", "Endpoint:organization")]
        endpoints: list[dict[str, Any]] = []
        organizations: dict[str, dict[str, Any]] = {}
        async for bundle in api.fhir.local().search_pages("Endpoint", params):
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                if resource.get("resourceType") == "Organization":
                    organizations[f"Organization/{resource['id']}"] = resource
                elif resource.get("resourceType") == "Endpoint" and entry.get("search", {}).get("mode", "match") == "match":
                    endpoints.append(resource)
        targets = []
        for endpoint in endpoints:
            address = str(endpoint.get("address", "")).rstrip("/")
            if not address or address == api.endpoint_url or endpoint.get("status") != "active":
                continue
            reference = str(endpoint.get("managingOrganization", {}).get("reference", ""))
            org = organizations.get("/".join(reference.split("/_history/")[0].split("/")[-2:]))
            identifier = tasks.identifier_value(org, ORGANIZATION_IDENTIFIER) if org else None
            if org is None or not org.get("active", True) or identifier in (None, api.organization_identifier):
                continue
            targets.append(Target(str(identifier), tasks.identifier_value(endpoint, ENDPOINT_IDENTIFIER), address).with_correlation_key())
        targets.sort(key=lambda t: (t.endpoint_identifier or "", t.endpoint_url))
        log.info("pinging %d endpoint(s): %s", len(targets), ", ".join(t.endpoint_url for t in targets))
        variables.set_targets(Targets.of(targets))


class SendPing(MessageSend):
    """The ``ping`` message; tells the pong side which of our endpoints to answer."""

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        return [tasks.parameter(PING, "endpoint-identifier", "Reference", {
            "type": "Endpoint",
            "identifier": {"system": ENDPOINT_IDENTIFIER, "value": api.endpoint_identifier or api.organization_identifier},
        })]

    async def on_send_error(self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError) -> None:
        code = classify(error)
        log.warning("ping to %s (%s): %s", target.organization_identifier, target.endpoint_url, error)
        variables.set("statusCode", code)
        variables.set("errorMessage", str(error))


def _record(variables: Variables, code: str, error: str | None = None) -> None:
    key = variables.correlation_key or (variables.target.correlation_key if variables.target else None)
    variables.set(f"statusCode_{key}", code)
    if error:
        variables.set(f"errorMessage_{key}", error)


class LogPong(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = variables.target
        log.info("pong from %s", target.organization_identifier if target else "?")
        _record(variables, "pong-received")


class LogNoResponse(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        target = variables.target
        log.warning("no pong from %s", target.organization_identifier if target else "?")
        _record(variables, "pong-missing")


class LogSendError(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        _record(variables, str(variables.get("statusCode")), variables.get("errorMessage"))


class SaveResults(ServiceTask):
    """One ``ping-status`` output per target on the start Task, sorted by endpoint."""

    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        start = variables.start_task
        for target in sorted(variables.targets, key=lambda t: (t.endpoint_identifier or "", t.endpoint_url)):
            code = variables.get(f"statusCode_{target.correlation_key}", "pong-missing")
            error = variables.get(f"errorMessage_{target.correlation_key}")
            tasks.add_output(start, PING, "ping-status", "Coding", {"system": PING_STATUS, "code": code},
                             extension=_status_extension(target, error))


# ----------------------------------------------------------------------------- pong


class LogPing(ServiceTask):
    def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        log.info("ping from %s", tasks.requester_identifier(variables.start_task))


class SelectPongTarget(ServiceTask):
    """Answer the requester at the endpoint the ping names, if we know it; else ``target_not_allowed``."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        ping = variables.start_task
        requester = tasks.requester_identifier(ping)
        reference = tasks.first_input(ping, PING, "endpoint-identifier") or {}
        endpoint_identifier = reference.get("identifier", {}).get("value") if isinstance(reference, dict) else None
        endpoint = await api.endpoints.by_identifier(endpoint_identifier) if endpoint_identifier else None
        if requester is None or endpoint is None:
            raise BpmnError("target_not_allowed", f"endpoint {endpoint_identifier!r} of {requester!r} is not known here")
        variables.set_target(Target(
            requester, endpoint_identifier, str(endpoint["address"]).rstrip("/"),
            tasks.message_input(ping, "correlation-key"),
        ))


class SendPong(MessageSend):
    """The ``pong`` reply; records ``pong-status`` on the ping Task either way."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        await super().execute(api, variables)
        target = self.target(api, variables)
        tasks.add_output(variables.start_task, PING, "pong-status", "Coding", {"system": PING_STATUS, "code": "pong-send"},
                         extension=_status_extension(target, None))

    async def on_send_error(self, api: ProcessPluginApi, variables: Variables, target: Target, error: FhirClientError) -> None:
        tasks.add_output(variables.start_task, PING, "pong-status", "Coding",
                         {"system": PING_STATUS, "code": classify(error)}, extension=_status_extension(target, str(error)))
        raise error


# ----------------------------------------------------------------------------- autostart


class SetTargetAndConfigureTimer(ServiceTask):
    """Ping ourselves every ``timer-interval`` (default PT24H)."""

    async def execute(self, api: ProcessPluginApi, variables: Variables) -> None:
        interval = tasks.input_string(variables.start_task, PING, "timer-interval") or "PT24H"
        variables.set("timerInterval", interval)
        variables.set_target(Target(api.organization_identifier, api.endpoint_identifier, api.endpoint_url))


class SendStartPing(MessageSend):
    """``startPing`` to our own mailbox, forwarding ``target-endpoints``."""

    business_key_strategy = "new"

    def additional_inputs(self, api: ProcessPluginApi, variables: Variables, target: Target) -> list[dict[str, Any]]:
        query = tasks.input_string(variables.start_task, PING, "target-endpoints")
        return [tasks.parameter(PING, "target-endpoints", "String", query)] if query else []
