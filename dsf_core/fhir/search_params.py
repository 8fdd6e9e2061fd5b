"""The search-parameter registry: data, dispatched by parameter type.

Every parameter names the JSON paths it is extracted from when a resource is written
(``dsf_core.fhir.indexing``) and its FHIR type, which decides how a query value is
parsed and compiled (``dsf_core.fhir.search``).  The CapabilityStatement is derived
from this table.  A path step may carry a filter ``name[key=value]`` (e.g. only the
``depends-on`` related artifacts of a Measure).

Clinical types (data-store mode) carry the FHIR R4 parameters a feasibility evaluator and the
KDS report search with, under their R4 names and paths, plus one dsf-py extension:
``Consent?mii-provision-provision-code`` (token over ``provision.provision.code``, the MII broad
consent's permitted policies).  Changing a parameter here changes the type's fingerprint, and the
store re-indexes the type's resources at the next start (``storage/migrations.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dsf_core.fhir.resource_types import METADATA_TYPES, RESOURCE_TYPES, STORE_EXTRA_TYPES

ParamType = Literal["token", "string", "uri", "reference", "date", "quantity"]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference target types
    documentation: str = ""
    # Index only references to one of ``targets`` (FHIR's ``subject.where(resolve() is Patient)``).
    only_targets: bool = False


def _p(
    name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = (), doc: str = "", only_targets: bool = False
) -> SearchParam:
    return SearchParam(name, type_, paths, targets, doc, only_targets)


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
    # FHIR R4: DocumentReference's identifier parameter covers masterIdentifier too (a data set's project).
    "DocumentReference": (
        _p("identifier", "token", "masterIdentifier", "identifier", doc="Master Version Specific Identifier or other identifier"),
        _p("status", "token", "status"),
    ),
    "Patient": (
        _IDENTIFIER,
        _p("active", "token", "active"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
        _p("name", "string", "name.family", "name.given", "name.text", "name.prefix", "name.suffix"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
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
def _subject(*targets: str) -> tuple[SearchParam, SearchParam]:
    """``subject`` and ``patient`` (the same path, Patient references only)."""
    return (
        _p("subject", "reference", "subject", targets=targets),
        _p("patient", "reference", "subject", targets=("Patient",), only_targets=True, doc="The subject, when it is a Patient"),
    )


_ENCOUNTER = _p("encounter", "reference", "encounter", targets=("Encounter",))
_STATUS = _p("status", "token", "status")
_MEDICATION = (
    _p("medication", "reference", "medicationReference", targets=("Medication",)),
    _p("code", "token", "medicationCodeableConcept", doc="The medication as a code"),
)
_CLINICAL: dict[str, tuple[SearchParam, ...]] = {
    "Condition": (
        _p("code", "token", "code"),
        *_subject("Patient", "Group"),
        _p("recorded-date", "date", "recordedDate"),
        _p("onset-date", "date", "onsetDateTime", "onsetPeriod"),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"),
        _ENCOUNTER,
    ),
    "Observation": (
        _p("code", "token", "code"),
        *_subject("Patient", "Group", "Device", "Location"),
        _p("date", "date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        _STATUS,
        _p("category", "token", "category"),
        _p("value-quantity", "quantity", "valueQuantity"),
        _p("value-concept", "token", "valueCodeableConcept"),
        _ENCOUNTER,
    ),
    "Procedure": (
        _p("code", "token", "code"),
        *_subject("Patient", "Group"),
        _p("date", "date", "performedDateTime", "performedPeriod"),
        _STATUS,
        _ENCOUNTER,
    ),
    "Encounter": (
        *_subject("Patient", "Group"),
        _p("date", "date", "period"),
        _STATUS,
        _p("class", "token", "class"),
        _p("type", "token", "type"),
    ),
    "Specimen": (
        _p("type", "token", "type"),
        *_subject("Patient", "Group", "Device", "Substance", "Location"),
        _p("collected", "date", "collection.collectedDateTime", "collection.collectedPeriod"),
        _p("bodysite", "token", "collection.bodySite"),
    ),
    "Consent": (
        _p("patient", "reference", "patient", targets=("Patient",)),
        _STATUS,
        _p("date", "date", "dateTime"),
        _p("category", "token", "category"),
        _p("period", "date", "provision.period"),
        _p(
            "mii-provision-provision-code",
            "token",
            "provision.provision.code",
            doc="dsf-py extension: codes of the nested provisions (MII broad consent policies)",
        ),
    ),
    "Medication": (
        _p("code", "token", "code"),
        _p("ingredient-code", "token", "ingredient.itemCodeableConcept"),
    ),
    "MedicationAdministration": (
        *_subject("Patient", "Group"),
        *_MEDICATION,
        _p("effective-time", "date", "effectiveDateTime", "effectivePeriod"),
        _STATUS,
    ),
    "MedicationRequest": (*_subject("Patient", "Group"), *_MEDICATION, _STATUS),
    "MedicationStatement": (
        *_subject("Patient", "Group"),
        *_MEDICATION,
        _p("effective", "date", "effectiveDateTime", "effectivePeriod"),
        _STATUS,
    ),
    "DiagnosticReport": (*_subject("Patient", "Group", "Device", "Location"), _p("code", "token", "code")),
    "List": (*_subject("Patient", "Group", "Device", "Location"),),
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
