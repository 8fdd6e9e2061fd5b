"""The Java ping/pong plugin's resources and messages, as the tests need them.

``deployed`` fills a plugin file's placeholders as the Java BPE does when it deploys it;
``ping_task`` and ``PING_XML`` are the ``ping`` message as the Java SendPing activity
sends it (profile ``task-ping``: message-name, business-key, correlation-key and
endpoint-identifier inputs).
"""

from __future__ import annotations

import re
from typing import Any

from dsf_core.fhir import codes
from tests.compat.helpers import org_ref

PROCESS = "http://dsf.dev/bpe/Process/"
PROFILE = "http://dsf.dev/fhir/StructureDefinition/"
PING_SYSTEM = "http://dsf.dev/fhir/CodeSystem/ping"


def deployed(text: str, *, version: str = "1.0", status: str = "active") -> bytes:
    """A plugin resource as the BPE deploys it: placeholders filled, status managed."""
    text = text.replace("#{version}", version).replace("#{date}", "2024-06-01").replace("#{organization}", "local.test")
    text = re.sub(r'<status value="unknown"\s*/>', f'<status value="{status}"/>', text)
    assert "#{" not in text
    return text.encode()


def message_input(code: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": codes.BPMN_MESSAGE, "code": code}]}, "valueString": value}


def ping_task(
    requester: str = "remote.test",
    *,
    recipient: str = "local.test",
    message_name: str = "ping",
    profile: str = PROFILE + "task-ping|1.0",
    canonical: str = PROCESS + "pong|1.0",
) -> dict[str, Any]:
    """A ``ping`` Task shaped like the Java SendPing activity sends it (task-ping: exactly these 4 inputs)."""
    return {
        "resourceType": "Task",
        "meta": {"profile": [profile]},
        "instantiatesCanonical": canonical,
        "status": "requested",
        "intent": "order",
        "authoredOn": "2024-06-01T10:00:00+02:00",
        "requester": org_ref(requester),
        "restriction": {"recipient": [org_ref(recipient)]},
        "input": [
            message_input("message-name", message_name),
            message_input("business-key", "3a1b2c3d-0000-4000-8000-000000000001"),
            message_input("correlation-key", "3a1b2c3d-0000-4000-8000-000000000002"),
            {
                "type": {"coding": [{"system": PING_SYSTEM, "code": "endpoint-identifier"}]},
                "valueReference": {
                    "type": "Endpoint",
                    "identifier": {"system": codes.ENDPOINT_IDENTIFIER, "value": f"{requester}-endpoint"},
                },
            },
        ],
    }


def start_ping_task(requester: str = "local.test") -> dict[str, Any]:
    task = ping_task(requester, message_name="startPing", profile=PROFILE + "task-start-ping|1.0", canonical=PROCESS + "ping|1.0")
    task["input"] = task["input"][:1]
    return task


PING_XML = """<Task xmlns="http://hl7.org/fhir">
   <meta>
      <profile value="http://dsf.dev/fhir/StructureDefinition/task-ping|1.0"/>
   </meta>
   <instantiatesCanonical value="http://dsf.dev/bpe/Process/pong|1.0"/>
   <status value="requested"/>
   <intent value="order"/>
   <authoredOn value="2024-06-01T10:00:00+02:00"/>
   <requester>
      <type value="Organization"/>
      <identifier>
         <system value="http://dsf.dev/sid/organization-identifier"/>
         <value value="remote.test"/>
      </identifier>
   </requester>
   <restriction>
      <recipient>
         <type value="Organization"/>
         <identifier>
            <system value="http://dsf.dev/sid/organization-identifier"/>
            <value value="local.test"/>
         </identifier>
      </recipient>
   </restriction>
   <input>
      <type>
         <coding>
            <system value="http://dsf.dev/fhir/CodeSystem/bpmn-message"/>
            <code value="message-name"/>
         </coding>
      </type>
      <valueString value="ping"/>
   </input>
   <input>
      <type>
         <coding>
            <system value="http://dsf.dev/fhir/CodeSystem/bpmn-message"/>
            <code value="business-key"/>
         </coding>
      </type>
      <valueString value="5e2b8f61-1b7c-4c55-9a43-5b8a1f0f8a01"/>
   </input>
   <input>
      <type>
         <coding>
            <system value="http://dsf.dev/fhir/CodeSystem/bpmn-message"/>
            <code value="correlation-key"/>
         </coding>
      </type>
      <valueString value="5e2b8f61-1b7c-4c55-9a43-5b8a1f0f8a02"/>
   </input>
   <input>
      <type>
         <coding>
            <system value="http://dsf.dev/fhir/CodeSystem/ping"/>
            <code value="endpoint-identifier"/>
         </coding>
      </type>
      <valueReference>
         <type value="Endpoint"/>
         <identifier>
            <system value="http://dsf.dev/sid/endpoint-identifier"/>
            <value value="remote.test-endpoint"/>
         </identifier>
      </valueReference>
   </input>
</Task>"""
