"""The FHIR → feature mapping rules, as data.

One table drives both ways in: the per-patient path (risk/extract, plain dict walking over a prefetch,
a REST search or a folder of bundles) and the population path (risk/features/bulk.py, polars over Bulk
NDJSON). Neither path hard-codes a code, a unit factor or a range: they read them from here, so the
two cannot drift apart (tests/features/test_bulk.py checks that they give identical rows).

What the rules say
==================

Observations (``OBSERVATION_RULES``)
    An Observation is used when one of its ``code.coding`` entries matches a rule's (system, code); the
    first matching coding wins. Its ``status`` must be one of ``USABLE_OBSERVATION_STATUSES``
    (``entered-in-error`` is noted as such; other statuses such as ``preliminary`` are skipped). Its
    clinical date is the first of ``effectiveDateTime``, ``effectiveInstant``, ``effectivePeriod.end``,
    ``effectivePeriod.start``, ``issued``; only the calendar date as written (the first ten characters,
    partial dates padded to the first day) is used, so no time-zone arithmetic can make the two paths
    disagree. Only values dated on or before the snapshot's as-of date count.

Quantities (``UnitTable``)
    The unit is ``valueQuantity.code`` when present, else ``valueQuantity.unit``. Each rule names a unit
    table: the canonical UCUM unit and a multiplicative factor for every accepted unit (UCUM codes and
    the human-readable spellings seen in EHR exports). A unit not in the table is a unit mismatch: the
    value is skipped and noted, never guessed. A missing unit is accepted only where the code fixes the
    unit (pack-years, cigarettes or packs per day). Converted values outside the plausible range are
    skipped. Packs per day (LOINC 8663-7) become cigarettes per day (× 20).

"Most recent wins"
    For every role the value with the latest (date, effective string, resource id) is used; the full
    effective string and the id only break ties on one date, identically in both paths.

Conditions (``CONDITION_SNOMED``, ``ICD10_CATEGORY_RULES``)
    SNOMED CT codes are matched exactly (no subsumption: this service has no terminology server, so the
    set lists the concepts EHRs actually send). ICD-10-CM codes are matched by category: the dot is
    removed and the first four characters are looked up, then the first three. Conditions whose
    ``verificationStatus`` is ``entered-in-error`` or ``refuted`` are ignored (and noted); every other
    verification status counts. ``clinicalStatus`` active / recurrence / relapse (or absent) marks the
    condition active; inactive / remission / resolved keep it as history (PLCOm2012 asks "ever
    diagnosed"), with ``active=False``. A condition counts when its onset (``onsetDateTime``, else
    ``onsetPeriod.start``, else ``recordedDate``) is on or before the as-of date, or unknown.

Family history (``FamilyMemberHistory``)
    Lung cancer (SNOMED lung-cancer set or ICD-10-CM C34) in a relative; first-degree relatives are the
    v3 RoleCode set in risk.codes.FIRST_DEGREE_RELATIVE_CODES. ``entered-in-error`` records are ignored.

Smoking reconciliation (``reconcile_smoking``-style rules, implemented in both paths)
    Status comes from the most recent status record. A never-smoker status drops recorded intensity,
    duration, pack-years and quit date (noted as a conflict) and sets pack-years to 0. A current-smoker
    status drops any quit date (noted). "Years since quit" records become a quit date of
    ``effective - floor(years × 365.25)`` days; the latest quit-date candidate wins. Pack-years missing
    but cigarettes/day and years smoked present are derived (20 cigarettes per pack) unless the result
    is implausible (> ``PACK_YEARS_MAX``). Conflicts noted: a never-smoker record alongside an
    ever-smoker record, two different values on one date, pack-years that decrease over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from risk import codes
from risk.codes import Code
from risk.domain.clinical import ConditionKind
from risk.domain.smoking import CIGARETTES_PER_PACK, SmokingStatus

# --- Observation status ---------------------------------------------------------------------------
USABLE_OBSERVATION_STATUSES: Final = frozenset({"final", "amended", "corrected"})
ENTERED_IN_ERROR: Final = "entered-in-error"


class ValueKind(StrEnum):
    """Which ``value[x]`` a rule reads."""

    CODED = "coded"
    """``valueCodeableConcept``: mapped through an answer table."""
    QUANTITY = "quantity"
    """``valueQuantity``: converted through a unit table."""
    DATETIME = "datetime"
    """``valueDateTime``: a calendar date."""


class Role(StrEnum):
    """What an Observation contributes to the snapshot (one feature or one input to reconciliation)."""

    SMOKING_STATUS = "smoking_status"
    PACK_YEARS = "pack_years"
    CIGARETTES_PER_DAY = "cigarettes_per_day"
    SMOKING_DURATION = "smoking_duration_years"
    YEARS_SINCE_QUIT = "years_since_quit"
    QUIT_DATE = "quit_date"
    BMI = "bmi"
    BODY_HEIGHT = "body_height"
    BODY_WEIGHT = "body_weight"
    EDUCATION = "education"
    WBC = "wbc"
    HEMOGLOBIN = "hemoglobin"
    PLATELETS = "platelets"
    NEUTROPHILS = "neutrophils"
    LYMPHOCYTES = "lymphocytes"
    CRP = "crp"
    ALBUMIN = "albumin"
    CEA = "cea"
    FEV1 = "fev1"
    FEV1_FVC = "fev1_fvc"


SMOKING_ROLES: Final = frozenset({
    Role.SMOKING_STATUS, Role.PACK_YEARS, Role.CIGARETTES_PER_DAY, Role.SMOKING_DURATION,
    Role.YEARS_SINCE_QUIT, Role.QUIT_DATE,
})


@dataclass(frozen=True, slots=True)
class UnitTable:
    """Accepted units for one kind of quantity: ``factors[unit]`` converts to ``canonical``.

    ``missing_unit_factor``: the factor for a value without a unit, where the code itself fixes the unit
    (None: a value without a unit is a unit mismatch). ``low``/``high``: the plausible range after
    conversion (inclusive); values outside it are skipped.
    """

    name: str
    canonical: str
    factors: MappingProxyType[str, float]
    low: float
    high: float
    missing_unit_factor: float | None = None

    def factor(self, unit: str | None) -> float | None:
        """The factor to the canonical unit, or None when the unit is not accepted."""
        if unit is None:
            return self.missing_unit_factor
        return self.factors.get(unit)


def _units(name: str, canonical: str, factors: dict[str, float], low: float, high: float, *,
           missing_unit_factor: float | None = None, canonical_is_accepted: bool = True) -> UnitTable:
    table = {canonical: 1.0, **factors} if canonical_is_accepted else dict(factors)
    return UnitTable(name, canonical, MappingProxyType(table), low, high, missing_unit_factor)


# Unit tables. Factors are exact by definition (SI prefixes, the international inch and avoirdupois
# pound) except the haemoglobin molar conversion (monomer basis, 16.1145 g/mmol: 1 mmol/L = 1.61145 g/dL,
# as used by the Dutch and Scandinavian labs that report in mmol/L).
_YEARS = {"years": 1.0, "year": 1.0, "yr": 1.0, "y": 1.0, "mo": 1 / 12}
PACK_YEARS_MAX: Final = 500.0
UNITS_PACK_YEARS = _units("pack-years", codes.UNIT_PACK_YEARS,
                          {"{PackYears}": 1.0, "{pack_years}": 1.0, "{packyears}": 1.0, "pack-years": 1.0,
                           "pack years": 1.0, "{pack-year}": 1.0, "1": 1.0},
                          0.0, PACK_YEARS_MAX, missing_unit_factor=1.0)
UNITS_CIGARETTES_PER_DAY = _units("cigarettes/day", codes.UNIT_PER_DAY,
                                  {"{cigarettes}/d": 1.0, "{cigarette}/d": 1.0, "{cig}/d": 1.0,
                                   "cigarettes/day": 1.0, "/day": 1.0, "1/d": 1.0},
                                  0.0, 200.0, missing_unit_factor=1.0)
# LOINC 8663-7 is packs per day by definition: its values become cigarettes/day (× 20 per pack), whatever
# the unit says, so even a bare "/d" is read as packs.
_PACK = float(CIGARETTES_PER_PACK)
UNITS_PACKS_PER_DAY = _units("packs/day → cigarettes/day", codes.UNIT_PER_DAY,
                             {codes.UNIT_PACKS_PER_DAY: _PACK, "{pack}/d": _PACK, "packs/day": _PACK,
                              "{packs}/day": _PACK, "/d": _PACK},
                             0.0, 200.0, missing_unit_factor=_PACK, canonical_is_accepted=False)
UNITS_SMOKING_YEARS = _units("years (smoking)", codes.UNIT_YEAR, _YEARS, 0.0, 100.0)
UNITS_BMI = _units("BMI", codes.UNIT_KG_M2, {"kg/m^2": 1.0, "kg/m²": 1.0, "kg/(m2)": 1.0}, 10.0, 100.0)
UNITS_HEIGHT = _units("body height", codes.UNIT_CM,
                      {"m": 100.0, "mm": 0.1, "[in_i]": 2.54, "[in_us]": 2.54, "in": 2.54}, 50.0, 250.0)
UNITS_WEIGHT = _units("body weight", codes.UNIT_KG,
                      {"g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237}, 20.0, 400.0)
_COUNT_PER_UL = {"10*9/L": 1.0, "10^9/L": 1.0, "10^3/uL": 1.0, "10*3/mm3": 1.0, "K/uL": 1.0, "/uL": 0.001,
                 "/mm3": 0.001}
UNITS_CELL_COUNT = _units("cells 10*3/uL", codes.UNIT_10_3_UL, _COUNT_PER_UL, 0.0, 1.0e4)
UNITS_HEMOGLOBIN = _units("hemoglobin", codes.UNIT_G_DL, {"g/L": 0.1, "mg/dL": 0.001, "mmol/L": 1.61145},
                          0.0, 30.0)
UNITS_CRP = _units("CRP", codes.UNIT_MG_L, {"mg/dL": 10.0, "ug/mL": 1.0}, 0.0, 1000.0)
UNITS_ALBUMIN = _units("albumin", codes.UNIT_G_DL, {"g/L": 0.1}, 0.0, 10.0)
UNITS_CEA = _units("CEA", codes.UNIT_NG_ML, {"ug/L": 1.0}, 0.0, 1.0e5)
UNITS_FEV1 = _units("FEV1", codes.UNIT_LITER, {"mL": 0.001}, 0.0, 10.0)
UNITS_FEV1_FVC = _units("FEV1/FVC", codes.UNIT_PERCENT, {"1": 100.0, "{ratio}": 100.0}, 0.0, 100.0)


@dataclass(frozen=True, slots=True)
class ObservationRule:
    """Observations with ``code`` feed ``role``; quantities convert through ``units``."""

    code: Code
    role: Role
    kind: ValueKind
    units: UnitTable | None = None

    def __post_init__(self) -> None:
        if (self.kind is ValueKind.QUANTITY) != (self.units is not None):
            raise ValueError(f'Argument "units" is required exactly for quantity rules ({self.code.code}).')


def _q(code: Code, role: Role, units: UnitTable) -> ObservationRule:
    return ObservationRule(code, role, ValueKind.QUANTITY, units)


# Codes: risk/codes.py (each verified there; interop.md §3.2 for smoking, §3.3 for vitals and labs).
OBSERVATION_RULES: Final[tuple[ObservationRule, ...]] = (
    # US Core Smoking Status 72166-2 and the other status codes of the "Smoking Status Type" value set
    # (US Core 7.0.0, VSAC 2.16.840.1.113762.1.4.1267.6): valueCodeableConcept with SNOMED answers.
    ObservationRule(codes.SMOKING_STATUS, Role.SMOKING_STATUS, ValueKind.CODED),
    ObservationRule(codes.TOBACCO_USE_HISTORY, Role.SMOKING_STATUS, ValueKind.CODED),
    ObservationRule(codes.SMOKING_STATUS_NHIS, Role.SMOKING_STATUS, ValueKind.CODED),
    # Pack-years: SNOMED 401201003 (US Core pack-years example) and 782516008 (calculated).
    _q(codes.PACK_YEARS, Role.PACK_YEARS, UNITS_PACK_YEARS),
    _q(codes.PACK_YEARS_CALCULATED, Role.PACK_YEARS, UNITS_PACK_YEARS),
    # Intensity: cigarettes/day (PhenX 64218-1) or packs/day (8663-7, × 20 cigarettes per pack).
    _q(codes.CIGARETTES_PER_DAY, Role.CIGARETTES_PER_DAY, UNITS_CIGARETTES_PER_DAY),
    _q(codes.CIGARETTE_PACKS_PER_DAY, Role.CIGARETTES_PER_DAY, UNITS_PACKS_PER_DAY),
    _q(codes.SMOKING_DURATION_YEARS, Role.SMOKING_DURATION, UNITS_SMOKING_YEARS),
    _q(codes.YEARS_SINCE_QUIT, Role.YEARS_SINCE_QUIT, UNITS_SMOKING_YEARS),
    ObservationRule(codes.SMOKING_QUIT_DATE, Role.QUIT_DATE, ValueKind.DATETIME),
    _q(codes.BMI, Role.BMI, UNITS_BMI),
    _q(codes.BODY_HEIGHT, Role.BODY_HEIGHT, UNITS_HEIGHT),
    _q(codes.BODY_WEIGHT, Role.BODY_WEIGHT, UNITS_WEIGHT),
    ObservationRule(codes.HIGHEST_EDUCATION, Role.EDUCATION, ValueKind.CODED),
    # The laboratory panel (documented in risk/extract/labs.py).
    _q(codes.WBC, Role.WBC, UNITS_CELL_COUNT),
    _q(codes.HEMOGLOBIN, Role.HEMOGLOBIN, UNITS_HEMOGLOBIN),
    _q(codes.PLATELETS, Role.PLATELETS, UNITS_CELL_COUNT),
    _q(codes.NEUTROPHILS, Role.NEUTROPHILS, UNITS_CELL_COUNT),
    _q(codes.LYMPHOCYTES, Role.LYMPHOCYTES, UNITS_CELL_COUNT),
    _q(codes.CRP, Role.CRP, UNITS_CRP),
    _q(codes.ALBUMIN, Role.ALBUMIN, UNITS_ALBUMIN),
    _q(codes.CEA, Role.CEA, UNITS_CEA),
    _q(codes.FEV1, Role.FEV1, UNITS_FEV1),
    _q(codes.FEV1_FVC, Role.FEV1_FVC, UNITS_FEV1_FVC),
)
RULE_BY_CODING: Final = MappingProxyType({(r.code.system, r.code.code): r for r in OBSERVATION_RULES})

LAB_ROLES: Final[tuple[Role, ...]] = (
    Role.WBC, Role.HEMOGLOBIN, Role.PLATELETS, Role.NEUTROPHILS, Role.LYMPHOCYTES, Role.CRP, Role.ALBUMIN,
    Role.CEA, Role.FEV1, Role.FEV1_FVC,
)
LAB_CODE_BY_ROLE: Final = MappingProxyType({r.role: r.code for r in OBSERVATION_RULES if r.role in LAB_ROLES})

# --- Coded answers ----------------------------------------------------------------------------------
SMOKING_STATUS_ANSWERS: Final = MappingProxyType({
    **{(c.system, c.code): SmokingStatus.CURRENT for c in codes.CURRENT_SMOKER_ANSWERS},
    **{(c.system, c.code): SmokingStatus.FORMER for c in codes.FORMER_SMOKER_ANSWERS},
    **{(c.system, c.code): SmokingStatus.NEVER for c in codes.NEVER_SMOKER_ANSWERS},
    **{(c.system, c.code): SmokingStatus.UNKNOWN for c in codes.UNKNOWN_SMOKER_ANSWERS},
})
"""US Core smoking-status answers (interop.md §3.2). "Smoker, current status unknown" (77176002) is a
smoker whose intensity is unknown: mapped to CURRENT, as the ONC 2015 value set groups it."""

EDUCATION_ANSWERS: Final = MappingProxyType({
    (codes.PLCO_EDUCATION_LEVEL_SYSTEM, str(level)): level for level in range(1, 7)
})
"""LOINC 82589-3 answers this service understands: the PLCOm2012 levels 1-6 (clinical-models.md §2)."""

# --- Conditions -------------------------------------------------------------------------------------
CONDITION_SNOMED: Final = MappingProxyType({
    codes.COPD.code: ConditionKind.COPD,
    codes.EMPHYSEMA.code: ConditionKind.EMPHYSEMA,
    codes.LUNG_CANCER.code: ConditionKind.LUNG_CANCER,
    codes.PRIMARY_LUNG_CANCER.code: ConditionKind.LUNG_CANCER,
    codes.MALIGNANT_NEOPLASM.code: ConditionKind.PERSONAL_HISTORY_OF_CANCER,
    codes.PERSONAL_HISTORY_OF_CANCER.code: ConditionKind.PERSONAL_HISTORY_OF_CANCER,
    codes.IMMUNODEFICIENCY.code: ConditionKind.IMMUNOCOMPROMISED,
})
"""SNOMED CT concepts (interop.md §3.4), matched exactly."""


def _icd_rules() -> dict[str, ConditionKind]:
    rules: dict[str, ConditionKind] = {}
    for prefix in codes.ICD_PREFIX_MALIGNANT_NEOPLASM + codes.ICD_PREFIX_HISTORY_OF_CANCER:
        rules[prefix] = ConditionKind.PERSONAL_HISTORY_OF_CANCER
    # Lung cancer is the outcome, not "another cancer": C34 and Z85.1 (personal history of malignant
    # neoplasm of trachea, bronchus and lung) map to LUNG_CANCER, never to personal history of cancer.
    for prefix in codes.ICD_PREFIX_LUNG_CANCER:
        rules[prefix] = ConditionKind.LUNG_CANCER
    rules["Z851"] = ConditionKind.LUNG_CANCER
    for prefix in codes.ICD_PREFIX_COPD:
        rules[prefix] = ConditionKind.COPD
    for prefix in codes.ICD_PREFIX_EMPHYSEMA:
        rules[prefix] = ConditionKind.EMPHYSEMA
    for prefix in codes.ICD_PREFIX_IMMUNODEFICIENCY:
        rules[prefix] = ConditionKind.IMMUNOCOMPROMISED
    return rules


ICD10_CATEGORY_RULES: Final = MappingProxyType(_icd_rules())
"""ICD-10-CM category (dot removed; 3 or 4 characters) → kind. C00-C96 are malignant neoplasms, C34 is
lung; J43 emphysema; J44 COPD; D80-D84 and B20 immunodeficiency; Z85 personal history of malignancy."""


def icd10_kind(code: str) -> ConditionKind | None:
    """The kind of an ICD-10-CM code: its first four characters (dot removed), then its first three."""
    key = code.replace(".", "").strip().upper()
    return ICD10_CATEGORY_RULES.get(key[:4]) or ICD10_CATEGORY_RULES.get(key[:3])


def condition_kind(system: str | None, code: str | None) -> ConditionKind | None:
    if not code:
        return None
    if system == codes.SNOMED:
        return CONDITION_SNOMED.get(code)
    if system == codes.ICD10CM:
        return icd10_kind(code)
    return None


IGNORED_VERIFICATION_STATUSES: Final = frozenset({"entered-in-error", "refuted"})
INACTIVE_CLINICAL_STATUSES: Final = frozenset({"inactive", "remission", "resolved"})

LUNG_CANCER_SNOMED: Final = frozenset({codes.LUNG_CANCER.code, codes.PRIMARY_LUNG_CANCER.code})

FAMILY_HISTORY_ICD_CATEGORY: Final = codes.ICD_FAMILY_HISTORY_LUNG_CANCER.code.replace(".", "")
"""Z80.1 "Family history of malignant neoplasm of trachea, bronchus and lung" recorded as a Condition.

ICD-10-CM does not say which relative; it is counted as a first-degree relative (the PLCOm2012 question
asks about parents, siblings and children, and problem-list family history is overwhelmingly about
them), with an INFO note saying so. Same verification-status and date rules as other Conditions."""


def is_family_history_condition_coding(system: str | None, code: str | None) -> bool:
    return system == codes.ICD10CM and isinstance(code, str) and (
        code.replace(".", "").strip().upper().startswith(FAMILY_HISTORY_ICD_CATEGORY))


def is_lung_cancer_coding(system: str | None, code: str | None) -> bool:
    """Family-history rule: the relative's condition is lung cancer (SNOMED set or ICD-10-CM C34)."""
    return condition_kind(system, code) is ConditionKind.LUNG_CANCER


# --- Imaging ----------------------------------------------------------------------------------------
IGNORED_IMAGING_STUDY_STATUSES: Final = frozenset({"entered-in-error", "cancelled"})
CT_MODALITY: Final = codes.MODALITY_CT.code
DAYS_PER_YEAR: Final = 365.25
