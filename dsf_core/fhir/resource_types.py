"""The resource types the mailbox serves and which interactions each allows (data)."""

from __future__ import annotations

RESOURCE_TYPES: tuple[str, ...] = (
    "ActivityDefinition",
    "Binary",
    "Bundle",
    "CodeSystem",
    "DocumentReference",
    "Endpoint",
    "Group",
    "HealthcareService",
    "Library",
    "Location",
    "Measure",
    "MeasureReport",
    "NamingSystem",
    "Organization",
    "OrganizationAffiliation",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "ResearchStudy",
    "StructureDefinition",
    "Subscription",
    "Task",
    "ValueSet",
)

# Data-store mode serves clinical data too (a site's local FHIR store in tests and the demo).
STORE_EXTRA_TYPES: tuple[str, ...] = (
    "Condition",
    "Consent",
    "Encounter",
    "Medication",
    "MedicationAdministration",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Procedure",
    "Specimen",
    "DiagnosticReport",
    "List",
)

INTERACTIONS: tuple[str, ...] = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)

# Metadata resources carry url|version and must be unique by it.
METADATA_TYPES: frozenset[str] = frozenset(
    {
        "ActivityDefinition",
        "CodeSystem",
        "Library",
        "Measure",
        "NamingSystem",
        "Questionnaire",
        "StructureDefinition",
        "ValueSet",
    }
)


def default_profiles(resource_type: str) -> tuple[str, ...]:
    """Profiles the DSF accepts as a type's default; the first is added when a resource names none of them.

    As the Java DSF: Task has none (every Task names its process's profile), Organization also
    accepts ``organization-parent``.
    """
    if resource_type == "Task":
        return ()
    if resource_type == "Organization":
        return (default_profile("Organization"), "http://dsf.dev/fhir/StructureDefinition/organization-parent")
    return (default_profile(resource_type),)


def default_profile(resource_type: str) -> str:
    """The DSF default profile of a type (``http://dsf.dev/fhir/StructureDefinition/<kebab-type>``)."""
    kebab = "".join("-" + c.lower() if c.isupper() else c for c in resource_type).lstrip("-")
    return f"http://dsf.dev/fhir/StructureDefinition/{kebab}"
