"""The DIC's safety gate: a search Bundle from the HRP runs against the KDS store only if every rule holds.

The searches must only count: they return totals, never resources, and may not narrow a count
down to anything that identifies a patient (a code, a day). The rules are those of the Java
plugin's ``CheckSearchBundle`` (1.1), checked on the URLs as written (nothing is percent-decoded,
so ``_summary%3Dfalse`` is an unknown parameter name, not a second ``_summary``):

=====================  ===============================================================
rule                   what every entry must satisfy
=====================  ===============================================================
``entries``            the Bundle is a ``batch`` with at least one entry
``no-resources``       the entry carries no resource
``get-only``           ``request.method`` is ``GET``
``url-required``       ``request.url`` is given
``resource-path``      the path is a FHIR R4 resource type (``Condition``, not ``Condition/1``) or ``metadata``
``metadata-plain``     ``metadata`` has no parameters (dsf-py; Java ignores them)
``summary-count``      exactly one ``_summary``, and it is ``count``
``allowed-parameters`` parameter names (``:modifier`` stripped) are only those of :data:`ALLOWED_PARAMETERS`
``date-eq``            a date parameter's value starts with ``eq``
``date-year``          a date parameter's value is ``eq`` and a year ``20xx``, nothing more
``token-system``       ``code``, ``ingredient-code`` and ``type`` name a system only (end with ``|``);
                       ``type`` on Encounter may name a code (the contact level)
=====================  ===============================================================

:func:`check_search_bundle` raises :class:`SearchBundleError` for the first entry that breaks a
rule, naming the rule, the entry (``Bundle.entry[i]``) and its URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOWED_PARAMETERS",
    "DATE_PARAMETERS",
    "RULES",
    "TOKEN_PARAMETERS",
    "SearchBundleError",
    "Violation",
    "check_search_bundle",
    "search_parameters",
    "violations",
]

METADATA = "metadata"
DATE_PARAMETERS = frozenset({
    "date", "recorded-date", "onset-date", "effective", "effective-time", "authored", "collected", "issued",
    "period", "location-period", "occurrence",
})
TOKEN_PARAMETERS = frozenset({"code", "ingredient-code", "type"})
ALLOWED_PARAMETERS = DATE_PARAMETERS | TOKEN_PARAMETERS | {"_profile", "_summary"}

RULES = (
    "entries", "no-resources", "get-only", "url-required", "resource-path", "metadata-plain", "summary-count",
    "allowed-parameters", "date-eq", "date-year", "token-system",
)

_YEAR = re.compile(r"^eq20\d{2}$")

#: The resource types of FHIR R4 (4.0.1): the only paths a search may have.
R4_RESOURCE_TYPES = frozenset("""
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic Binary
BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication
MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition
OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition
StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
""".split())


@dataclass(frozen=True)
class Violation:
    rule: str
    index: int | None  # the entry; None for the Bundle itself
    url: str | None
    detail: str

    def __str__(self) -> str:
        where = "the search Bundle" if self.index is None else f"Bundle.entry[{self.index}]"
        if self.url is not None:
            where += f" ({self.url!r})"
        return f"search Bundle rule '{self.rule}' broken by {where}: {self.detail}"


class SearchBundleError(ValueError):
    """A search Bundle breaks a rule; the message names the first violation (and how many more there are)."""

    def __init__(self, found: list[Violation]) -> None:
        self.violations = found
        more = f" (and {len(found) - 1} more violation{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        super().__init__(f"{found[0]}{more}")


def search_parameters(url: str) -> tuple[str, list[tuple[str, str | None]]]:
    """``Type?a=1&b`` → ``("Type", [("a", "1"), ("b", None)])``, as written (no percent-decoding)."""
    path, question, query = url.partition("?")
    pairs: list[tuple[str, str | None]] = []
    for part in query.split("&") if question else ():
        if part:
            name, equals, value = part.partition("=")
            pairs.append((name, value if equals else None))
    return path, pairs


def check_search_bundle(bundle: Mapping[str, Any]) -> None:
    """Raise :class:`SearchBundleError` unless every entry of ``bundle`` obeys every rule."""
    found = list(violations(bundle))
    if found:
        raise SearchBundleError(found)


def violations(bundle: Mapping[str, Any]) -> Iterator[Violation]:
    """The first broken rule of each entry (of the Bundle first, if it is not a batch with entries)."""
    entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "batch":
        yield Violation("entries", None, None, "it is not a Bundle of type batch")
        return
    if not isinstance(entries, list) or not entries:
        yield Violation("entries", None, None, "it has no entries")
        return
    for index, entry in enumerate(entries):
        problem = _entry_violation(entry if isinstance(entry, Mapping) else {})
        if problem is not None:
            rule, url, detail = problem
            yield Violation(rule, index, url, detail)


def _entry_violation(entry: Mapping[str, Any]) -> tuple[str, str | None, str] | None:
    raw = entry.get("request")
    request: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    url = request.get("url") if isinstance(request.get("url"), str) else None
    if "resource" in entry:
        return "no-resources", url, "the entry carries a resource; a search Bundle may only hold requests"
    if request.get("method") != "GET":
        return "get-only", url, f"method {request.get('method')!r}, only GET is allowed"
    if not url:
        return "url-required", None, "the request has no url"
    path, parameters = search_parameters(url)
    if path == METADATA:
        return ("metadata-plain", url, "metadata takes no parameters") if "?" in url else None
    if path not in R4_RESOURCE_TYPES:
        return "resource-path", url, f"forbidden path [{path}]: only a FHIR resource type (a type search) or metadata"
    return _parameter_violation(path, parameters, url)


def _parameter_violation(path: str, parameters: list[tuple[str, str | None]], url: str) -> tuple[str, str, str] | None:
    summaries = [(name, value) for name, value in parameters if name.partition(":")[0] == "_summary"]
    if not summaries:
        return "summary-count", url, "no _summary parameter; every search must be _summary=count"
    if len(summaries) > 1:
        return "summary-count", url, f"more than one _summary parameter ({len(summaries)})"
    if summaries[0] != ("_summary", "count"):
        name, value = summaries[0]
        return "summary-count", url, f"unexpected _summary parameter {name}={value} (expected: _summary=count)"
    unknown = sorted({name for name, _ in parameters if name.partition(":")[0] not in ALLOWED_PARAMETERS})
    if unknown:
        return "allowed-parameters", url, (
            f"invalid search parameters {unknown}; only allowed are {sorted(ALLOWED_PARAMETERS)}")
    for name, value in parameters:
        base = name.partition(":")[0]
        if base in DATE_PARAMETERS:
            if not (value or "").startswith("eq"):
                return "date-eq", url, f"date search parameter not starting with 'eq': [{name}={value}]"
            if not _YEAR.match(value or ""):
                return "date-year", url, f"date search parameter not limited to a year 20xx: [{name}={value}]"
        if base in TOKEN_PARAMETERS and not (value or "").endswith("|") and not (name == "type" and path == "Encounter"):
            return "token-system", url, f"code search parameter not limited to a system (system|): [{name}={value}]"
    return None
