"""Reasons in words for the rows a coordinator looks at, from the one-patient functions themselves.

The stored result row holds the inputs the patient-level rules read (age and birth date, smoking status, pack-years,
quit date, cigarettes/day, years smoked, conditions, education, BMI, race/ethnicity). For a row on screen (or in a
CSV export) :func:`snapshot_from_row` rebuilds a minimal :class:`~risk.domain.PatientSnapshot` from them, and
:func:`eligibility_reasons` / :func:`plco_reason` call :func:`risk.assess.eligibility.eligibility_decisions` and
:func:`risk.assess.risks.plcom2012_estimate` on it, so the words are exactly the CDS card's and the SMART app's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from risk import codes
from risk.assess.eligibility import PROGRAM_LABELS, eligibility_decisions
from risk.assess.risks import plcom2012_estimate
from risk.domain import (
    AdministrativeSex,
    ConditionFact,
    ConditionKind,
    Demographics,
    EducationLevel,
    FamilyHistoryFact,
    ObservedValue,
    PatientSnapshot,
    RaceEthnicity,
    RiskEstimate,
    SmokingHistory,
    SmokingStatus,
    SourceKind,
    SourceRef,
)

_CONDITIONS = {"copd": ConditionKind.COPD, "emphysema": ConditionKind.EMPHYSEMA,
               "personal_history_cancer": ConditionKind.PERSONAL_HISTORY_OF_CANCER,
               "immunocompromised": ConditionKind.IMMUNOCOMPROMISED, "lung_cancer": ConditionKind.LUNG_CANCER}


def snapshot_from_row(row: Mapping[str, Any], as_of: date) -> PatientSnapshot:
    """A minimal snapshot with what the patient-level rules read (sources point at the population run)."""
    pid = str(row["patient_id"])
    src = SourceRef(SourceKind.DERIVED, f"population_patient/{pid}", as_of)
    demographics = None
    birth = row.get("birth_date")
    if birth is not None and birth <= as_of:
        sex = row.get("sex")
        race = row.get("race_ethnicity")
        demographics = Demographics(birth_date=birth, sex=AdministrativeSex(sex) if sex else AdministrativeSex.UNKNOWN,
                                    source=src, race_ethnicity=RaceEthnicity(race) if race else None)
    smoking = None
    status = row.get("smoking_status")
    if status:
        st = SmokingStatus(status)
        smoking = SmokingHistory(
            status=st, sources=(src,),
            cigarettes_per_day=None if st is SmokingStatus.NEVER else row.get("cigarettes_per_day"),
            smoking_duration_years=None if st is SmokingStatus.NEVER else row.get("smoking_duration_years"),
            pack_years=row.get("pack_years") if st is not SmokingStatus.NEVER else 0.0,
            quit_date=row.get("quit_date") if st is SmokingStatus.FORMER else None)
    conditions = tuple(ConditionFact(kind=kind, code=kind.value, system=codes.SNOMED, source=src)
                       for name, kind in _CONDITIONS.items() if row.get(name))
    family = (FamilyHistoryFact(relationship="first-degree relative", first_degree=True, source=src),) \
        if row.get("family_history_lung_cancer") else ()
    education = EducationLevel(int(row["education_level"]), src) if row.get("education_level") else None
    bmi = ObservedValue(float(row["bmi"]), "kg/m2", src) if row.get("bmi") is not None else None
    return PatientSnapshot(patient_id=pid, as_of=as_of, demographics=demographics, smoking=smoking, bmi=bmi,
                           education=education, conditions=conditions, family_history=family)


def eligibility_reasons(row: Mapping[str, Any], as_of: date) -> list[dict[str, Any]]:
    """[{program, label, eligible, reason}] for the three programs, worded by risk.assess."""
    snapshot = snapshot_from_row(row, as_of)
    return [{"program": d.program.value, "label": PROGRAM_LABELS[d.program], "eligible": d.eligible,
             "reason": d.reason} for d in eligibility_decisions(snapshot)]


def plco_reason(row: Mapping[str, Any], as_of: date) -> str:
    """The PLCOm2012 result in words: the probability with its model, or why it abstained."""
    result = plcom2012_estimate(snapshot_from_row(row, as_of))
    if isinstance(result, RiskEstimate):
        imputed = f" (imputed: {'; '.join(result.imputed)})" if result.imputed else ""
        return f"{result.model} six-year risk {result.probability:.2%}{imputed}"
    return f"{result.model}: cannot score: {result.reason}"
