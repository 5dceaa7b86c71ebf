"""Screening eligibility per program (USPSTF 2021, CMS 2022, ACS 2023) from a snapshot.

The rules are :func:`risk.guidelines.eligibility.program_decision`; this module supplies its inputs from the
snapshot and says what is missing instead of guessing. A criterion that already fails (age outside the range,
never smoked) decides "not eligible" even when other inputs are missing; otherwise missing inputs give
``eligible=None`` with ``missing_inputs`` named.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from risk.domain.assessment import EligibilityDecision, ScreeningProgram
from risk.domain.clinical import ConditionFact, ConditionKind
from risk.domain.patient import Demographics
from risk.domain.provenance import SourceKind, SourceRef
from risk.domain.smoking import SmokingHistory, SmokingStatus
from risk.domain.snapshot import PatientSnapshot
from risk.guidelines import eligibility as rules

AGE_RANGES = {
    ScreeningProgram.USPSTF_2021: rules.USPSTF_AGE_YEARS,
    ScreeningProgram.CMS_2022: rules.CMS_AGE_YEARS,
    ScreeningProgram.ACS_2023: rules.ACS_AGE_YEARS,
}
PROGRAM_LABELS = {
    ScreeningProgram.USPSTF_2021: "USPSTF 2021",
    ScreeningProgram.CMS_2022: "CMS 2022",
    ScreeningProgram.ACS_2023: "ACS 2023",
}


def eligibility_decisions(snapshot: PatientSnapshot, on: date | None = None) -> tuple[EligibilityDecision, ...]:
    """One decision per program, evaluated on ``on`` (default: the snapshot's date).

    A pure function of the demographics, the smoking history, whether lung cancer is known, and the day: memoised
    on exactly those."""
    day = on or snapshot.as_of
    return _decisions(snapshot.demographics, snapshot.smoking, snapshot.has_condition(ConditionKind.LUNG_CANCER), day)


@lru_cache(maxsize=8192)
def _decisions(demographics: Demographics | None, smoking: SmokingHistory | None, lung_cancer: bool,
               day: date) -> tuple[EligibilityDecision, ...]:
    facts = PatientSnapshot(patient_id="-", as_of=max(day, demographics.birth_date) if demographics else day,
                            demographics=demographics, smoking=smoking,
                            conditions=(_LUNG_CANCER,) if lung_cancer else ())
    return tuple(_decide(facts, program, day) for program in ScreeningProgram)


_LUNG_CANCER = ConditionFact(kind=ConditionKind.LUNG_CANCER, code="-", system="-",
                             source=SourceRef(SourceKind.DERIVED, "eligibility-memo"))


def eligible_on(snapshot: PatientSnapshot, day: date) -> bool | None:
    """True when any program's criteria are met on ``day``; None when it cannot be told."""
    decisions = eligibility_decisions(snapshot, day)
    if any(d.eligible for d in decisions):
        return True
    if any(d.eligible is None for d in decisions):
        return None
    return False


def _decide(snapshot: PatientSnapshot, program: ScreeningProgram, day: date) -> EligibilityDecision:
    demo = snapshot.demographics
    age = demo.age_years(day) if demo is not None and day >= demo.birth_date else None
    low, high = AGE_RANGES[program]
    if snapshot.has_condition(ConditionKind.LUNG_CANCER):
        return EligibilityDecision(program, False, "not eligible: already diagnosed with lung cancer "
                                   "(screening is for people without it)")
    if age is not None and not low <= age <= high:
        return EligibilityDecision(program, False, f"not eligible: age {age} outside {low:g}-{high:g}")
    smoking = snapshot.smoking
    if smoking is not None and smoking.status is SmokingStatus.NEVER:
        return EligibilityDecision(program, False, "not eligible: never smoked")
    missing: list[str] = []
    if age is None:
        missing.append("age (birth date)")
    if smoking is None or smoking.status is SmokingStatus.UNKNOWN:
        missing.append("smoking status")
    pack_years = smoking.pack_years if smoking is not None else None
    if smoking is not None and smoking.status.ever_smoker and pack_years is None:
        missing.append("pack-years")
    years_since_quit = smoking.years_since_quit(day) if smoking is not None else None
    needs_quit = program is not ScreeningProgram.ACS_2023
    if smoking is not None and smoking.status is SmokingStatus.FORMER and years_since_quit is None and needs_quit:
        missing.append("quit date")
    if pack_years is not None and pack_years < rules.MIN_PACK_YEARS:
        return EligibilityDecision(program, False, f"not eligible: {pack_years:.1f} pack-years "
                                   f"(< {rules.MIN_PACK_YEARS:g})")
    if (needs_quit and years_since_quit is not None and smoking is not None
            and smoking.status is SmokingStatus.FORMER and years_since_quit >= rules.QUIT_LIMIT_YEARS):
        return EligibilityDecision(program, False, f"not eligible: quit {years_since_quit:.0f} years ago "
                                   f"(not smoked for {rules.QUIT_LIMIT_YEARS:g} years or more)")
    if missing:
        return EligibilityDecision(program, None, "cannot tell: missing " + ", ".join(missing),
                                   missing_inputs=tuple(missing))
    assert smoking is not None and age is not None and pack_years is not None
    decision = rules.program_decision(program, age=float(age), smoking_status=smoking.status.value,
                                      pack_years=float(pack_years),
                                      years_since_quit=years_since_quit if smoking.status is SmokingStatus.FORMER
                                      else None)
    reason = decision.reason
    if decision.eligible and decision.notes:
        reason += ". " + " ".join(decision.notes)
    return EligibilityDecision(program, decision.eligible, reason)
