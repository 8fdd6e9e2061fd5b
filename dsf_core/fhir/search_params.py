"""The search-parameter registry: data, dispatched by parameter type.

Every parameter names the JSON paths it is extracted from when a resource is written
(``dsf_core.fhir.indexing``) and its FHIR type, which decides how a query value is
parsed and compiled (``dsf_core.fhir.search``).  The CapabilityStatement is derived
from this table.  A path step may carry a filter ``name[key=value]`` (e.g. only the
``depends-on`` related artifacts of a Measure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dsf_core.fhir.resource_types import METADATA_TYPES, RESOURCE_TYPES, STORE_EXTRA_TYPES

ParamType = Literal["token", "string", "uri", "reference", "date"]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference target types
    documentation: str = ""


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = (), doc: str = "") -> SearchParam:
    return SearchParam(name, type_, paths, targets, doc)


# Parameters every type has.  ``_id`` and ``_lastUpdated`` are columns, not index rows.
COMMON: tuple[SearchParam, ...] = (
    _p("_profile", "uri", "meta.profile", doc="Profiles the resource claims to conform to"),
)

_IDENTIFIER = _p("identifier", "token", "identifier", doc="Business identifier")
_METADATA = (
    _p("url", "uri", "url", doc="Canonical URL"),
    _p("version", "token", "version", doc="Business version"),
    _p("status", "token", "status", doc="Publication status"),
    _p("date", "date", "date", doc="Publication date"),
    _p("name", "string", "name", doc="Computer-friendly name"),
    _IDENTIFIER,
)

_BY_TYPE: dict[str, tuple[SearchParam, ...]] = {
    "Task": (
        _p("authored-on", "date", "authoredOn"),
        _IDENTIFIER,
        _p("modified", "date", "lastModified"),
        _p("requester", "reference", "requester", targets=("Organization", "Practitioner", "PractitionerRole")),
        _p("status", "token", "status"),
        _p("owner", "reference", "owner", targets=("Organization",)),
        # Internal: the recipient decides Task visibility (restriction.recipient).
        _p("_recipient", "reference", "restriction.recipient", targets=("Organization",)),
    ),
    "QuestionnaireResponse": (
        _p("author", "reference", "author", targets=("Organization", "Practitioner", "PractitionerRole")),
        _p("authored", "date", "authored"),
        _IDENTIFIER,
        _p("questionnaire", "reference", "questionnaire", targets=("Questionnaire",)),
        _p("status", "token", "status"),
        _p("subject", "reference", "subject"),
    ),
    "Organization": (
        _p("active", "token", "active"),
        _p("endpoint", "reference", "endpoint", targets=("Endpoint",)),
        _IDENTIFIER,
        _p("name", "string", "name", "alias"),
        _p("type", "token", "type"),
        # Internal: the certificate thumbprint that identifies the organisation.
        _p("_thumbprint", "token", "extension[url=http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint].valueString"),
    ),
    "Endpoint": (
        _p("address", "uri", "address"),
        _IDENTIFIER,
        _p("name", "string", "name"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("status", "token", "status"),
        _p("_thumbprint", "token", "extension[url=http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint].valueString"),
    ),
    "OrganizationAffiliation": (
        _p("active", "token", "active"),
        _p("endpoint", "reference", "endpoint", targets=("Endpoint",)),
        _IDENTIFIER,
        _p("participating-organization", "reference", "participatingOrganization", targets=("Organization",)),
        _p("primary-organization", "reference", "organization", targets=("Organization",)),
        _p("role", "token", "code"),
    ),
    "Measure": (
        *_METADATA,
        _p("depends-on", "reference", "relatedArtifact[type=depends-on].resource", "library", targets=("Library",)),
    ),
    "Binary": (_p("contentType", "token", "contentType"),),
    "Subscription": (
        _p("criteria", "string", "criteria"),
        _p("payload", "token", "channel.payload"),
        _p("status", "token", "status"),
        _p("type", "token", "channel.type"),
    ),
    "Bundle": (_IDENTIFIER,),
    "DocumentReference": (_IDENTIFIER, _p("status", "token", "status")),
    "Patient": (
        _IDENTIFIER,
        _p("active", "token", "active"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
    ),
    "Practitioner": (_IDENTIFIER, _p("active", "token", "active")),
    "PractitionerRole": (
        _IDENTIFIER,
        _p("active", "token", "active"),
        _p("organization", "reference", "organization", targets=("Organization",)),
        _p("practitioner", "reference", "practitioner", targets=("Practitioner",)),
    ),
    "HealthcareService": (_IDENTIFIER, _p("active", "token", "active"), _p("name", "string", "name")),
    "Location": (_IDENTIFIER, _p("name", "string", "name"), _p("status", "token", "status")),
    "Group": (_IDENTIFIER,),
    "ResearchStudy": (
        _IDENTIFIER,
        _p("enrollment", "reference", "enrollment", targets=("Group",)),
        _p("principalinvestigator", "reference", "principalInvestigator", targets=("Practitioner", "PractitionerRole")),
    ),
    "Provenance": (_p("target", "reference", "target"),),
    "MeasureReport": (
        _IDENTIFIER,
        _p("measure", "reference", "measure", targets=("Measure",)),
        _p("status", "token", "status"),
    ),
}
for _type in METADATA_TYPES:
    _BY_TYPE.setdefault(_type, _METADATA)

# Clinical types for data-store mode: the parameters a feasibility/report search needs.
_CLINICAL: dict[str, tuple[SearchParam, ...]] = {
    "Condition": (_p("code", "token", "code"), _p("subject", "reference", "subject"), _p("recorded-date", "date", "recordedDate")),
    "Observation": (_p("code", "token", "code"), _p("subject", "reference", "subject"), _p("date", "date", "effectiveDateTime", "effectivePeriod"), _p("status", "token", "status")),
    "Procedure": (_p("code", "token", "code"), _p("subject", "reference", "subject"), _p("date", "date", "performedDateTime", "performedPeriod")),
    "Encounter": (_p("subject", "reference", "subject"), _p("date", "date", "period"), _p("status", "token", "status")),
    "Specimen": (_p("type", "token", "type"), _p("subject", "reference", "subject"), _p("collected", "date", "collection.collectedDateTime")),
    "Consent": (_p("patient", "reference", "patient"), _p("status", "token", "status")),
    "Medication": (_p("code", "token", "code"),),
    "MedicationAdministration": (_p("subject", "reference", "subject"), _p("medication", "reference", "medicationReference")),
    "MedicationRequest": (_p("subject", "reference", "subject"), _p("medication", "reference", "medicationReference")),
    "MedicationStatement": (_p("subject", "reference", "subject"), _p("medication", "reference", "medicationReference")),
    "DiagnosticReport": (_p("subject", "reference", "subject"), _p("code", "token", "code")),
    "List": (_p("subject", "reference", "subject"),),
}
for _type, _params in _CLINICAL.items():
    _BY_TYPE[_type] = (_IDENTIFIER, *_params)

# _include / _revinclude targets the DSF allows: (source type, reference parameter).
INCLUDES: frozenset[tuple[str, str]] = frozenset(
    {
        ("Endpoint", "organization"),
        ("Organization", "endpoint"),
        ("OrganizationAffiliation", "endpoint"),
        ("OrganizationAffiliation", "participating-organization"),
        ("OrganizationAffiliation", "primary-organization"),
        ("PractitionerRole", "organization"),
        ("PractitionerRole", "practitioner"),
        ("QuestionnaireResponse", "author"),
        ("QuestionnaireResponse", "questionnaire"),
        ("QuestionnaireResponse", "subject"),
        ("ResearchStudy", "enrollment"),
        ("ResearchStudy", "principalinvestigator"),
        ("Measure", "depends-on"),
        ("Task", "requester"),
    }
)


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """All parameters of a type, by name (common ones included)."""
    return _REGISTRY.get(resource_type, {})


def is_internal(name: str) -> bool:
    """Internal parameters (leading underscore, not a FHIR common parameter) are never searchable by clients."""
    return name in {"_recipient", "_thumbprint", "_securityContext"}


_REGISTRY: dict[str, dict[str, SearchParam]] = {}
for _type in (*RESOURCE_TYPES, *STORE_EXTRA_TYPES):
    _entries = {p.name: p for p in COMMON}
    _entries.update({p.name: p for p in _BY_TYPE.get(_type, (_IDENTIFIER,))})
    if _type == "Binary":
        _entries["_securityContext"] = _p("_securityContext", "reference", "securityContext")
    _REGISTRY[_type] = _entries
