"""Synthetic patients shaped like the MII Kerndatensatz (core data set): plain FHIR R4 JSON dicts.

::

    spec = DatasetSpec(patients=50, seed=7)
    for group in patient_groups(spec):      # one patient at a time: bounded memory for any N
        group.patient, group.resources
    dataset = generate(spec)                  # everything at once, for small N (tests)
    dataset.of_type("Condition")

Deterministic: patient *i* is drawn from its own ``random.Random(f"{seed}/{i}")`` and every date
is computed from ``spec.reference_date`` (never the clock), so the same spec gives the same
resources on any machine, and the first *k* patients of a larger dataset equal a dataset of *k*.

Per patient (tables in :mod:`dsf_core.data.vocabulary`): the Patient; 1–4 Encounters (IMP/AMB)
within the ten years before the reference date; Conditions (ICD-10-GM, more with age); lab and
vital-sign Observations (LOINC, UCUM quantities) and a smoking status (SNOMED concept); OPS
Procedures and ATC MedicationAdministrations, mostly in inpatient stays; Specimens; and for
about 70% a broad Consent.  A Medication resource per ATC code is written once per dataset, in
the group of the first patient who gets that drug, so each group's references resolve within it
or an earlier group.  Ids are ``<prefix>-<n>`` for patient *n* and ``<prefix>-<n>-<kind>-<k>``
for its resources (prefix ``s<seed>`` unless given), so datasets with different prefixes can
share a store.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dsf_core.data import vocabulary as v

__all__ = ["DataError", "Dataset", "DatasetSpec", "PatientGroup", "REFERENCE_DATE", "generate", "patient_groups"]

REFERENCE_DATE = dt.date(2026, 1, 1)
#: Encounters fall within this many days before the reference date.
HISTORY_DAYS = 3650
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,23}$")
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")

Resource = dict[str, Any]
T = TypeVar("T")
C = TypeVar("C", bound=v.Coded)


class DataError(ValueError):
    """Bad generator arguments; the message names the argument."""


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate. ``id_prefix`` defaults to ``s<seed>``; ``site`` names the identifier systems."""

    patients: int
    seed: int = 0
    reference_date: dt.date = REFERENCE_DATE
    id_prefix: str | None = None
    site: str = "dic.example.org"

    def __post_init__(self) -> None:
        if isinstance(self.patients, bool) or not isinstance(self.patients, int) or self.patients < 1:
            raise DataError(f"patients must be a whole number of at least 1, got {self.patients!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(f"seed must be a whole number, got {self.seed!r}")
        if not isinstance(self.reference_date, dt.date) or isinstance(self.reference_date, dt.datetime):
            raise DataError(f"reference date must be a date, got {self.reference_date!r}")
        if self.reference_date.year < 1910:
            raise DataError(f"reference date {self.reference_date} is too early (patients are up to 100 years old)")
        if not _PREFIX.match(self.prefix):
            raise DataError(
                f"id prefix {self.prefix!r}: 1 to 24 letters, digits, '-' or '.', starting with a letter or digit"
            )
        if not _SITE.match(self.site):
            raise DataError(f"site {self.site!r}: a host name (letters, digits, '-', '.')")

    @property
    def prefix(self) -> str:
        return self.id_prefix if self.id_prefix is not None else f"s{self.seed}"


@dataclass(frozen=True)
class PatientGroup:
    """One patient's resources: the Patient first, then everything referring to it."""

    index: int
    resources: tuple[Resource, ...]

    @property
    def patient(self) -> Resource:
        return self.resources[0]


@dataclass(frozen=True)
class Dataset:
    """A whole generated dataset in memory (use :func:`patient_groups` for large N)."""

    spec: DatasetSpec
    groups: tuple[PatientGroup, ...]

    @property
    def patients(self) -> list[Resource]:
        return [g.patient for g in self.groups]

    def resources(self) -> Iterator[Resource]:
        for group in self.groups:
            yield from group.resources

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources() if r["resourceType"] == resource_type]


def generate(spec: DatasetSpec) -> Dataset:
    return Dataset(spec, tuple(patient_groups(spec)))


def patient_groups(spec: DatasetSpec) -> Iterator[PatientGroup]:
    """The patients of *spec* one at a time, in order (patient 1 first)."""
    medications_written: set[str] = set()
    for index in range(1, spec.patients + 1):
        patient = _Patient(spec, index)
        resources = patient.build()
        new = [code for code in patient.drugs_used if code not in medications_written]
        medications_written.update(new)
        yield PatientGroup(index, (resources[0], *(medication(spec, code) for code in new), *resources[1:]))


def medication_id(spec: DatasetSpec, atc_code: str) -> str:
    return f"{spec.prefix}-med-{atc_code.lower()}"


def medication(spec: DatasetSpec, atc_code: str) -> Resource:
    drug = next(d for d in v.MEDICATIONS if d.code == atc_code)
    return {
        "resourceType": "Medication",
        "id": medication_id(spec, atc_code),
        "meta": _profile("Medication"),
        "code": {"coding": [_coding(v.ATC, drug.code, drug.display, v.ATC_VERSION)], "text": drug.display},
        "status": "active",
    }


# --------------------------------------------------------------------------- helpers


def _profile(resource_type: str) -> dict[str, Any]:
    return {"profile": [v.PROFILES[resource_type]]}


def _coding(system: str, code: str, display: str | None = None, version: str | None = None) -> dict[str, str]:
    coding = {"system": system}
    if version:
        coding["version"] = version
    coding["code"] = code
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str | None = None, version: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display, version)]}


def _instant(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _years_later(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (max(x, x0) - x0) / (x1 - x0)
    return points[-1][1]


# Children's mean weight (kg) and height (cm) by age; adults use the vocabulary's means from 18.
_CHILD_WEIGHT = ((0.0, 3.5), (1.0, 10.0), (2.0, 12.5), (5.0, 18.5), (10.0, 32.0), (14.0, 52.0))
_CHILD_HEIGHT = ((0.0, 50.0), (1.0, 75.0), (2.0, 87.0), (5.0, 110.0), (10.0, 140.0), (14.0, 163.0))


@dataclass(frozen=True)
class _Stay:
    id: str
    inpatient: bool
    start: dt.datetime
    end: dt.datetime


class _Patient:
    """Draws one patient's resources from its own random source."""

    def __init__(self, spec: DatasetSpec, index: int) -> None:
        self.spec = spec
        self.rng = random.Random(f"{spec.seed}/{index}")
        self.id = f"{spec.prefix}-{index}"
        self.subject = {"reference": f"Patient/{self.id}"}
        self.reference = dt.datetime.combine(spec.reference_date, dt.time())
        self.drugs_used: list[str] = []
        self._counters: dict[str, int] = {}
        # Drawn by build(), in this order: each later part depends on the earlier ones.
        self.gender = ""
        self.birth = spec.reference_date
        self.stays: list[_Stay] = []
        self.diagnoses: set[str] = set()

    def _next_id(self, kind: str) -> str:
        self._counters[kind] = self._counters.get(kind, 0) + 1
        return f"{self.id}-{kind}-{self._counters[kind]}"

    def _weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        return self.rng.choices(items, weights=weights)[0]

    def _pick(self, items: Sequence[C]) -> C:
        return self._weighted(items, [item.weight for item in items])

    def _poisson(self, mean: float) -> int:
        limit, k, product = math.exp(-mean), 0, self.rng.random()
        while product > limit:
            k += 1
            product *= self.rng.random()
        return k

    def _during(self, stay: _Stay) -> dt.datetime:
        seconds = int((stay.end - stay.start).total_seconds())
        return stay.start + dt.timedelta(seconds=self.rng.randint(0, max(seconds, 0)))

    def age_at(self, moment: dt.datetime) -> float:
        return (moment.date() - self.birth).days / 365.25

    # ------------------------------------------------------------------ the patient

    def build(self) -> list[Resource]:
        out = [self._patient()]
        self.stays = self._stays()
        out += [self._encounter(stay) for stay in self.stays]
        conditions = self._conditions()
        self.diagnoses = {c["code"]["coding"][0]["code"] for c in conditions}
        out += conditions
        out += self._observations()
        for stay in self.stays:
            out += self._procedures(stay)
        for stay in self.stays:
            out += self._administrations(stay)
        out += self._specimens()
        if self.rng.random() < 0.7:
            out.append(self._consent())
        return out

    def _patient(self) -> Resource:
        self.gender = self._weighted([g for g, _ in v.GENDERS], [w for _, w in v.GENDERS])
        low, high, _ = self._weighted(v.AGE_BANDS, [w for _, _, w in v.AGE_BANDS])
        age = self.rng.randint(low, high)
        self.birth = self.spec.reference_date - dt.timedelta(days=int(age * 365.25) + self.rng.randint(3, 364))
        given = v.GIVEN_NAMES.get(self.gender) or v.GIVEN_NAMES["male"] + v.GIVEN_NAMES["female"]
        return {
            "resourceType": "Patient",
            "id": self.id,
            "meta": _profile("Patient"),
            "identifier": [
                {
                    "use": "usual",
                    "type": _concept(v.IDENTIFIER_TYPE, "MR"),
                    "system": f"https://{self.spec.site}/fhir/sid/patient-id",
                    "value": self.id,
                }
            ],
            "name": [{"use": "official", "family": self.rng.choice(v.FAMILY_NAMES), "given": [self.rng.choice(given)]}],
            "gender": self.gender,
            "birthDate": self.birth.isoformat(),
        }

    def _stays(self) -> list[_Stay]:
        age = self.age_at(self.reference)
        count = self._weighted([1, 2, 3, 4], [25, 30, 25, 20] if age >= 60 else [40, 30, 18, 12])
        first = max(self.birth.toordinal() + 1, self.spec.reference_date.toordinal() - HISTORY_DAYS)
        last = self.spec.reference_date.toordinal() - 2
        starts = sorted(
            dt.datetime.combine(dt.date.fromordinal(self.rng.randint(first, last)), dt.time(self.rng.randint(7, 18)))
            + dt.timedelta(minutes=self.rng.randint(0, 59))
            for _ in range(count)
        )
        stays = []
        for start in starts:
            inpatient = self.rng.random() < 0.4
            if inpatient:
                length = dt.timedelta(days=1 + min(int(self.rng.expovariate(1 / 4)), 30), hours=self.rng.randint(-4, 4))
            else:
                length = dt.timedelta(minutes=self.rng.randint(15, 120))
            stays.append(_Stay(self._next_id("enc"), inpatient, start, min(start + length, self.reference)))
        return stays

    def _encounter(self, stay: _Stay) -> Resource:
        kind = ("IMP", "inpatient encounter") if stay.inpatient else ("AMB", "ambulatory")
        return {
            "resourceType": "Encounter",
            "id": stay.id,
            "meta": _profile("Encounter"),
            "identifier": [
                {
                    "type": _concept(v.IDENTIFIER_TYPE, "VN"),
                    "system": f"https://{self.spec.site}/fhir/sid/encounter-id",
                    "value": stay.id,
                }
            ],
            "status": "finished",
            "class": _coding(v.ACT_CODE, *kind),
            "type": [_concept(v.CONTACT_LEVEL, "einrichtungskontakt", "Einrichtungskontakt")],
            "subject": self.subject,
            "period": {"start": _instant(stay.start), "end": _instant(stay.end)},
        }

    def _conditions(self) -> list[Resource]:
        age = self.age_at(self.reference)
        eligible = [d for d in v.DIAGNOSES if d.min_age <= age and d.gender in (None, self.gender)]
        chosen: list[v.Diagnosis] = []
        for _ in range(min(self._poisson(0.3 + age / 30), len(eligible))):
            diagnosis = self._pick(eligible)
            eligible.remove(diagnosis)
            chosen.append(diagnosis)
        out = []
        for diagnosis in chosen:
            stays = [s for s in self.stays if self.age_at(s.start) >= diagnosis.min_age]
            if not stays:  # too young at every stay
                continue
            stay = self.rng.choice(stays)
            recorded = self._during(stay)
            # Onset after the diagnosis' minimum age; acute ones a few days before they were recorded.
            room = max((recorded.date() - self.birth).days - int(diagnosis.min_age * 365.25), 0)
            back = min(self.rng.randint(0, 5) if diagnosis.acute else self.rng.randint(0, 3650), room)
            onset = recorded - dt.timedelta(days=back)
            active = self.rng.random() < (0.15 if diagnosis.acute else 0.9)
            out.append(
                {
                    "resourceType": "Condition",
                    "id": self._next_id("cond"),
                    "meta": _profile("Condition"),
                    "clinicalStatus": _concept(v.CONDITION_CLINICAL, "active" if active else "resolved"),
                    "verificationStatus": _concept(v.CONDITION_VERIFICATION, "confirmed"),
                    "code": _concept(v.ICD10GM, diagnosis.code, diagnosis.display, v.ICD10GM_VERSION),
                    "subject": self.subject,
                    "encounter": {"reference": f"Encounter/{stay.id}"},
                    "onsetDateTime": _instant(onset),
                    "recordedDate": _instant(recorded),
                }
            )
        return out

    # ------------------------------------------------------------------ observations

    def _observations(self) -> list[Resource]:
        out = []
        for stay in self.stays:
            if self.rng.random() < (0.95 if stay.inpatient else 0.6):
                panel = [m for m in v.LAB_VALUES if self.rng.random() < m.frequency] or [v.LAB_VALUES[0]]
                taken = self._during(stay)
                out += [self._quantity(m, stay, taken) for m in panel]
            if self.rng.random() < (0.8 if stay.inpatient else 0.3):
                taken = self._during(stay)
                out += [self._quantity(v.BODY_WEIGHT, stay, taken), self._quantity(v.BODY_HEIGHT, stay, taken)]
        if self.age_at(self.stays[-1].start) >= 12 and self.rng.random() < 0.6:
            out.append(self._smoking(self.stays[-1]))
        return out

    def _value(self, m: v.Measurement, taken: dt.datetime) -> float:
        mean = m.mean_female if m.mean_female is not None and self.gender == "female" else m.mean
        sd = m.sd
        if m.code in v.DIABETIC_VALUES and "E11.9" in self.diagnoses:
            mean, sd = v.DIABETIC_VALUES[m.code]
        age = self.age_at(taken)
        if m in (v.BODY_WEIGHT, v.BODY_HEIGHT) and age < 18:
            child = _interpolate((*(_CHILD_WEIGHT if m is v.BODY_WEIGHT else _CHILD_HEIGHT), (18.0, mean)), age)
            mean, sd = child, sd * child / mean
        if m is v.BODY_WEIGHT and "E66.9" in self.diagnoses:
            mean *= 1.3
        return round(min(max(self.rng.gauss(mean, sd), m.low), m.high), m.decimals)

    def _observation(self, kind: str, code: str, display: str, category: str, stay: _Stay, taken: dt.datetime) -> Resource:
        observation_id = self._next_id(kind)
        categories = [_concept(v.OBSERVATION_CATEGORY, category)]
        resource: Resource = {"resourceType": "Observation", "id": observation_id}
        if category == "laboratory":
            resource["meta"] = _profile("Observation")
            resource["identifier"] = [
                {
                    "type": _concept(v.IDENTIFIER_TYPE, "OBI"),
                    "system": f"https://{self.spec.site}/fhir/sid/observation-id",
                    "value": observation_id,
                }
            ]
            categories[0]["coding"].append(_coding(v.LOINC, "26436-6", "Laboratory studies (set)"))
        elif code in v.VITAL_SIGN_PROFILES:
            resource["meta"] = {"profile": [v.VITAL_SIGN_PROFILES[code]]}
        resource |= {
            "status": "final",
            "category": categories,
            "code": _concept(v.LOINC, code, display),
            "subject": self.subject,
            "encounter": {"reference": f"Encounter/{stay.id}"},
            "effectiveDateTime": _instant(taken),
        }
        return resource

    def _quantity(self, m: v.Measurement, stay: _Stay, taken: dt.datetime) -> Resource:
        value = self._value(m, taken)
        resource = self._observation("obs", m.code, m.display, m.category, stay, taken)
        resource["valueQuantity"] = {"value": value if m.decimals else int(value), "unit": m.unit,
                                     "system": v.UCUM, "code": m.unit}
        return resource

    def _smoking(self, stay: _Stay) -> Resource:
        answer = self._pick(v.SMOKING_VALUES)
        resource = self._observation("obs", *v.SMOKING_STATUS, "social-history", stay, self._during(stay))
        resource["valueCodeableConcept"] = _concept(v.SNOMED, answer.code, answer.display)
        return resource

    # ------------------------------------------------------------------ procedures, medication, specimens

    def _procedures(self, stay: _Stay) -> list[Resource]:
        out = []
        for _ in range(self._poisson(1.2 if stay.inpatient else 0.2)):
            op = self._pick(v.PROCEDURES)
            out.append(
                {
                    "resourceType": "Procedure",
                    "id": self._next_id("proc"),
                    "meta": _profile("Procedure"),
                    "status": "completed",
                    "category": _concept(v.SNOMED, *op.category),
                    "code": _concept(v.OPS, op.code, op.display, v.OPS_VERSION),
                    "subject": self.subject,
                    "encounter": {"reference": f"Encounter/{stay.id}"},
                    "performedDateTime": _instant(self._during(stay)),
                }
            )
        return out

    def _administrations(self, stay: _Stay) -> list[Resource]:
        out = []
        for _ in range(self._poisson(2.0 if stay.inpatient else 0.3)):
            drug = self._pick(v.MEDICATIONS)
            if drug.code not in self.drugs_used:
                self.drugs_used.append(drug.code)
            out.append(
                {
                    "resourceType": "MedicationAdministration",
                    "id": self._next_id("medadm"),
                    "meta": _profile("MedicationAdministration"),
                    "status": "completed",
                    "medicationReference": {"reference": f"Medication/{medication_id(self.spec, drug.code)}"},
                    "subject": self.subject,
                    "context": {"reference": f"Encounter/{stay.id}"},
                    "effectiveDateTime": _instant(self._during(stay)),
                }
            )
        return out

    def _specimens(self) -> list[Resource]:
        out = []
        for stay in self.stays:
            if self.rng.random() >= (0.5 if stay.inpatient else 0.15):
                continue
            kind = self._pick(v.SPECIMENS)
            out.append(
                {
                    "resourceType": "Specimen",
                    "id": self._next_id("spec"),
                    "meta": _profile("Specimen"),
                    "status": "available",
                    "type": _concept(v.SNOMED, kind.code, kind.display),
                    "subject": self.subject,
                    "collection": {
                        "collectedDateTime": _instant(self._during(stay)),
                        "bodySite": _concept(v.SNOMED, *kind.body_site),
                    },
                }
            )
        return out

    # ------------------------------------------------------------------ consent

    def _consent(self) -> Resource:
        signed = self._during(self.stays[0])
        refuses = self.rng.random() < 0.15
        provisions = []
        for code, display in v.CONSENT_PROVISIONS:
            # As the MII broad consent: collecting and storing for five years, research use for thirty.
            years = 5 if code.endswith((".2", ".3", ".6", ".7")) else 30
            provisions.append(
                {
                    "type": "deny" if refuses and code == v.REFUSABLE_PROVISION else "permit",
                    "period": {"start": _instant(signed), "end": _instant(_years_later(signed, years))},
                    "code": [_concept(v.CONSENT_POLICY, code, display)],
                }
            )
        return {
            "resourceType": "Consent",
            "id": self._next_id("consent"),
            "meta": _profile("Consent"),
            "status": "active",
            "scope": _concept(v.CONSENT_SCOPE, "research"),
            "category": [_concept(v.LOINC, "57016-8"), _concept(v.CONSENT_CATEGORY, v.BROAD_CONSENT)],
            "patient": self.subject,
            "dateTime": _instant(signed),
            "policy": [{"uri": f"urn:oid:{v.BROAD_CONSENT}"}],
            "provision": {
                "type": "deny",
                "period": {"start": _instant(signed), "end": _instant(_years_later(signed, 30))},
                "provision": provisions,
            },
        }
