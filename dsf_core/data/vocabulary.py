"""The code systems, profiles and weighted code lists the synthetic data draws from (data, not code).

Weights are relative frequencies among hospital patients, rounded: plausible, not epidemiology.
Every table is a tuple of frozen values so a reader (or a test computing expected counts) can
import it and iterate over exactly what the generator uses.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------- systems

ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
ICD10GM_VERSION = "2024"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
OPS_VERSION = "2024"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
ATC_VERSION = "2024"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONTACT_LEVEL = "http://fhir.de/CodeSystem/Kontaktebene"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "https://www.medizininformatik-initiative.de/fhir/modul-consent/CodeSystem/mii-cs-consent-consent_category"
#: The MII broad-consent policy: codes of its provisions (``…24.5.3.N``).
CONSENT_POLICY = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
BROAD_CONSENT = "2.16.840.1.113883.3.1937.777.24.2.184"

# --------------------------------------------------------------------------- profiles

_MII = "https://www.medizininformatik-initiative.de/fhir"
PROFILES: dict[str, str] = {
    "Patient": f"{_MII}/core/modul-person/StructureDefinition/Patient",
    "Encounter": f"{_MII}/core/modul-fall/StructureDefinition/KontaktGesundheitseinrichtung",
    "Condition": f"{_MII}/core/modul-diagnose/StructureDefinition/Diagnose",
    "Observation": f"{_MII}/core/modul-labor/StructureDefinition/ObservationLab",
    "Procedure": f"{_MII}/core/modul-prozedur/StructureDefinition/Procedure",
    "Medication": f"{_MII}/core/modul-medikation/StructureDefinition/Medication",
    "MedicationAdministration": f"{_MII}/core/modul-medikation/StructureDefinition/MedicationAdministration",
    "Specimen": f"{_MII}/ext/modul-biobank/StructureDefinition/SpecimenCore",
    "Consent": f"{_MII}/modul-consent/StructureDefinition/mii-pr-consent-einwilligung",
}
#: Vital signs are not lab values: they carry the FHIR base vital-signs profiles instead.
VITAL_SIGN_PROFILES: dict[str, str] = {
    "29463-7": "http://hl7.org/fhir/StructureDefinition/bodyweight",
    "8302-2": "http://hl7.org/fhir/StructureDefinition/bodyheight",
}



@dataclass(frozen=True)
class Coded:
    """A code of some system with its display and its relative frequency among the choices."""

    code: str
    display: str
    weight: int


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Diagnosis(Coded):
    #: Youngest age at which the diagnosis is drawn.
    min_age: int = 18
    #: Acute diagnoses are mostly resolved later; chronic ones stay active.
    acute: bool = False
    #: Only drawn for this gender ("female"), or for anyone (None).
    gender: str | None = None


DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis("I10", "Essentielle (primäre) Hypertonie", 25, min_age=25),
    Diagnosis("E78.0", "Reine Hypercholesterinämie", 12, min_age=25),
    Diagnosis("E11.9", "Diabetes mellitus, Typ 2, ohne Komplikationen", 10, min_age=30),
    Diagnosis("M54.5", "Kreuzschmerz", 9),
    Diagnosis("K21.9", "Gastroösophageale Refluxkrankheit ohne Ösophagitis", 8),
    Diagnosis("F32.9", "Depressive Episode, nicht näher bezeichnet", 7, min_age=14),
    Diagnosis("E66.9", "Adipositas, nicht näher bezeichnet", 6, min_age=6),
    Diagnosis("J45.9", "Asthma bronchiale, nicht näher bezeichnet", 6, min_age=3),
    Diagnosis("I25.9", "Chronische ischämische Herzkrankheit, nicht näher bezeichnet", 6, min_age=40),
    Diagnosis("E03.9", "Hypothyreose, nicht näher bezeichnet", 5),
    Diagnosis("I50.9", "Herzinsuffizienz, nicht näher bezeichnet", 5, min_age=50),
    Diagnosis("N18.3", "Chronische Nierenkrankheit, Stadium 3", 5, min_age=40),
    Diagnosis("J18.9", "Pneumonie, nicht näher bezeichnet", 5, min_age=0, acute=True),
    Diagnosis("N39.0", "Harnwegsinfektion, Lokalisation nicht näher bezeichnet", 5, min_age=0, acute=True),
    Diagnosis("I21.9", "Akuter Myokardinfarkt, nicht näher bezeichnet", 4, min_age=35, acute=True),
    Diagnosis("U07.1", "COVID-19, Virus nachgewiesen", 4, min_age=0, acute=True),
    Diagnosis("D64.9", "Anämie, nicht näher bezeichnet", 4, min_age=0),
    Diagnosis("G43.9", "Migräne, nicht näher bezeichnet", 3, min_age=8),
    Diagnosis("C50.9", "Bösartige Neubildung: Brustdrüse, nicht näher bezeichnet", 3, min_age=30, gender="female"),
    Diagnosis("C34.9", "Bösartige Neubildung: Bronchus oder Lunge, nicht näher bezeichnet", 2, min_age=40),
    Diagnosis("C18.9", "Bösartige Neubildung: Kolon, nicht näher bezeichnet", 2, min_age=40),
)

# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Measurement:
    """A LOINC-coded quantity, drawn from a normal distribution (by sex where ``mean_female`` is set)."""

    code: str
    display: str
    unit: str
    mean: float
    sd: float
    decimals: int
    low: float
    high: float
    category: str = "laboratory"
    mean_female: float | None = None
    #: Share of panels that include it.
    frequency: float = 0.5


LAB_VALUES: tuple[Measurement, ...] = (
    Measurement("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 15.0, 1.3, 1, 6.0, 20.0,
                mean_female=13.6, frequency=0.9),
    Measurement("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 98.0, 15.0, 0, 40.0, 500.0, frequency=0.6),
    Measurement("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 1.0, 0.2, 2, 0.2, 12.0,
                mean_female=0.8, frequency=0.7),
    Measurement("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.5, 0.4, 1, 3.5, 16.0, frequency=0.2),
    Measurement("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 195.0, 38.0, 0, 80.0, 450.0,
                frequency=0.3),
    Measurement("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7.0, 1.8, 1, 1.0, 40.0,
                frequency=0.8),
)
BODY_WEIGHT = Measurement("29463-7", "Body weight", "kg", 85.0, 14.0, 1, 2.0, 250.0, category="vital-signs",
                          mean_female=70.0)
BODY_HEIGHT = Measurement("8302-2", "Body height", "cm", 179.0, 7.0, 0, 45.0, 215.0, category="vital-signs",
                          mean_female=166.0)
#: Every quantity-valued observation kind, by LOINC code.
QUANTITIES: dict[str, Measurement] = {m.code: m for m in (*LAB_VALUES, BODY_WEIGHT, BODY_HEIGHT)}
#: With diagnosis E11.9, glucose and HbA1c are drawn from these (mean, sd) instead.
DIABETIC_VALUES: dict[str, tuple[float, float]] = {"2339-0": (150.0, 40.0), "4548-4": (7.4, 1.1)}


#: Observation with a concept value: LOINC 72166-2 "Tobacco smoking status", SNOMED answers.
SMOKING_STATUS = ("72166-2", "Tobacco smoking status")
SMOKING_VALUES: tuple[Coded, ...] = (
    Coded("266919005", "Never smoked tobacco", 50),
    Coded("8517006", "Ex-smoker", 25),
    Coded("77176002", "Smoker", 25),
)

# --------------------------------------------------------------------------- procedures, medication


@dataclass(frozen=True)
class Operation(Coded):
    #: SNOMED category of the OPS chapter (1 diagnostic, 3 imaging, 5 surgical, 8/9 therapeutic).
    category: tuple[str, str]


_DIAGNOSTIC = ("103693007", "Diagnostic procedure")
_IMAGING = ("363679005", "Imaging")
_SURGICAL = ("387713003", "Surgical procedure")
_THERAPEUTIC = ("277132007", "Therapeutic procedure")
PROCEDURES: tuple[Operation, ...] = (
    Operation("3-200", "Native Computertomographie des Schädels", 14, _IMAGING),
    Operation("3-225", "Computertomographie des Abdomens mit Kontrastmittel", 10, _IMAGING),
    Operation("1-632.0", "Diagnostische Ösophagogastroduodenoskopie: Bei normalem Situs", 10, _DIAGNOSTIC),
    Operation("1-440.a", "Endoskopische Biopsie am oberen Verdauungstrakt: 1 bis 5 Biopsien", 7, _DIAGNOSTIC),
    Operation("8-930", "Monitoring von Atmung, Herz und Kreislauf", 16, _THERAPEUTIC),
    Operation("8-800.c0", "Transfusion von Erythrozytenkonzentrat: 1 TE bis unter 6 TE", 8, _THERAPEUTIC),
    Operation("9-984.7", "Pflegebedürftigkeit: Pflegegrad 2", 9, _THERAPEUTIC),
    Operation("5-511.11", "Cholezystektomie: Einfach, laparoskopisch: Ohne Exploration der Gallengänge", 5, _SURGICAL),
    Operation("5-470.11", "Appendektomie: Laparoskopisch: Absetzung durch Klammern", 4, _SURGICAL),
    Operation("5-820.00", "Implantation einer Endoprothese am Hüftgelenk: Totalendoprothese: Nicht zementiert", 4,
              _SURGICAL),
)


MEDICATIONS: tuple[Coded, ...] = (
    Coded("N02BB02", "Metamizol-Natrium", 16),
    Coded("A02BC02", "Pantoprazol", 14),
    Coded("B01AB05", "Enoxaparin", 12),
    Coded("N02BE01", "Paracetamol", 10),
    Coded("C09AA05", "Ramipril", 9),
    Coded("C07AB07", "Bisoprolol", 9),
    Coded("C10AA05", "Atorvastatin", 8),
    Coded("B01AC06", "Acetylsalicylsäure", 7),
    Coded("A10BA02", "Metformin", 6),
    Coded("H03AA01", "Levothyroxin-Natrium", 6),
    Coded("J01CR02", "Amoxicillin und Beta-Lactamase-Inhibitor", 5),
)

# --------------------------------------------------------------------------- specimens


@dataclass(frozen=True)
class SpecimenKind(Coded):
    body_site: tuple[str, str]


_VEIN = ("49852007", "Structure of median cubital vein")
SPECIMENS: tuple[SpecimenKind, ...] = (
    SpecimenKind("119297000", "Blood specimen", 30, _VEIN),
    SpecimenKind("119364003", "Serum specimen", 25, _VEIN),
    SpecimenKind("119361006", "Plasma specimen", 20, _VEIN),
    SpecimenKind("122575003", "Urine specimen", 15, ("89837001", "Urinary bladder structure")),
    SpecimenKind("119376003", "Tissue specimen", 10, ("71854001", "Colon structure")),
)

# --------------------------------------------------------------------------- consent

#: Provisions of the MII broad consent the generator writes (code, display).
CONSENT_PROVISIONS: tuple[tuple[str, str], ...] = (
    ("2.16.840.1.113883.3.1937.777.24.5.3.2", "IDAT erheben"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.3", "IDAT speichern, verarbeiten"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.6", "MDAT erheben"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.7", "MDAT speichern, verarbeiten"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.8", "MDAT wissenschaftlich nutzen EU DSGVO NIVEAU"),
    ("2.16.840.1.113883.3.1937.777.24.5.3.9", "MDAT zusammenfuehren Dritte"),
)
#: The one provision some patients refuse (``deny``) while permitting the rest.
REFUSABLE_PROVISION = "2.16.840.1.113883.3.1937.777.24.5.3.9"

# --------------------------------------------------------------------------- people

FAMILY_NAMES: tuple[str, ...] = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
    "Braun", "Krüger", "Hartmann", "Lange", "Werner", "Krause", "Lehmann", "Köhler", "Yılmaz", "Nowak",
)
GIVEN_NAMES: dict[str, tuple[str, ...]] = {
    "male": ("Lukas", "Jonas", "Leon", "Paul", "Felix", "Maximilian", "Thomas", "Michael", "Andreas", "Stefan",
             "Peter", "Klaus", "Jürgen", "Wolfgang", "Mehmet", "Hans"),
    "female": ("Anna", "Marie", "Sophie", "Emma", "Hannah", "Lea", "Sabine", "Andrea", "Claudia", "Petra",
               "Monika", "Ursula", "Renate", "Elif", "Katharina", "Gisela"),
}
GENDERS: tuple[tuple[str, int], ...] = (("male", 490), ("female", 490), ("other", 10), ("unknown", 10))
#: Age bands (lowest, highest inclusive, weight): hospitals see more old than young patients.
AGE_BANDS: tuple[tuple[int, int, int], ...] = ((0, 17, 12), (18, 39, 20), (40, 59, 25), (60, 79, 30), (80, 100, 13))
