"""DSF URLs, systems and codes used on the wire (facts from the Java DSF 2.1)."""

from __future__ import annotations

ORGANIZATION_IDENTIFIER = "http://dsf.dev/sid/organization-identifier"
ENDPOINT_IDENTIFIER = "http://dsf.dev/sid/endpoint-identifier"
TASK_IDENTIFIER = "http://dsf.dev/sid/task-identifier"
PRACTITIONER_IDENTIFIER = "http://dsf.dev/sid/practitioner-identifier"

READ_ACCESS_TAG = "http://dsf.dev/fhir/CodeSystem/read-access-tag"
EXT_READ_ACCESS_ORGANIZATION = "http://dsf.dev/fhir/StructureDefinition/extension-read-access-organization"
EXT_READ_ACCESS_ROLE = "http://dsf.dev/fhir/StructureDefinition/extension-read-access-parent-organization-role"

EXT_THUMBPRINT = "http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint"

BPMN_MESSAGE = "http://dsf.dev/fhir/CodeSystem/bpmn-message"
ORGANIZATION_ROLE = "http://dsf.dev/fhir/CodeSystem/organization-role"
PRACTITIONER_ROLE = "http://dsf.dev/fhir/CodeSystem/practitioner-role"

PROCESS_AUTHORIZATION = "http://dsf.dev/fhir/CodeSystem/process-authorization"
EXT_PROCESS_AUTHORIZATION = "http://dsf.dev/fhir/StructureDefinition/extension-process-authorization"
EXT_PA_ORGANIZATION = "http://dsf.dev/fhir/StructureDefinition/extension-process-authorization-organization"
EXT_PA_ORGANIZATION_PRACTITIONER = (
    "http://dsf.dev/fhir/StructureDefinition/extension-process-authorization-organization-practitioner"
)
EXT_PA_ROLE = "http://dsf.dev/fhir/StructureDefinition/extension-process-authorization-parent-organization-role"
EXT_PA_ROLE_PRACTITIONER = (
    "http://dsf.dev/fhir/StructureDefinition/extension-process-authorization-parent-organization-role-practitioner"
)
EXT_PA_PRACTITIONER = "http://dsf.dev/fhir/StructureDefinition/extension-process-authorization-practitioner"

ENDPOINT_CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"

PROFILE_BASE = "http://dsf.dev/fhir/StructureDefinition/"

# Instantiates-canonical of a DSF process: http(s)://<domain>/bpe/Process/<name>|<major.minor>
INSTANTIATES_CANONICAL_PATTERN = (
    r"^(?P<url>(?:http|https)://(?P<domain>(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+(?::[0-9]+)?)"
    r"/bpe/Process/(?P<name>[A-Za-z0-9-]+))\|(?P<version>\d+\.\d+)$"
)

# The two Subscriptions a DSF FHIR server provides for its business process engine.
TASK_SUBSCRIPTION_CRITERIA = "Task?status=requested"
QUESTIONNAIRE_RESPONSE_SUBSCRIPTION_CRITERIA = "QuestionnaireResponse?status=completed"
