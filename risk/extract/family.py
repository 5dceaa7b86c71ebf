"""FamilyMemberHistory → lung cancer in a relative, flagged when the relative is first-degree.

A record counts when its status is not ``entered-in-error`` (noted), its ``date`` (if any) is on or
before the as-of date, and one of its ``condition[].code`` codings is lung cancer (SNOMED 363358000 /
93880001 or ICD-10-CM C34, interop.md §3.5). First-degree relatives: the v3 RoleCode codes in
risk.codes.FIRST_DEGREE_RELATIVE_CODES (parents, siblings, children, including natural and twin codes).
The relationship coding must be in the v3 RoleCode system or carry no system.

A Condition coded ICD-10-CM Z80.1 (family history of lung cancer, relative unspecified) also counts, as a
first-degree relative (see risk/features/rules.py FAMILY_HISTORY_ICD_CATEGORY), with an INFO note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Final

from risk import codes
from risk.domain.clinical import FamilyHistoryFact
from risk.domain.provenance import NoteCode
from risk.extract.conditions import onset_text
from risk.extract.fhirjson import clinical_date, coded_value, codings, items, resource_key, source_ref
from risk.extract.notes import NoteSink
from risk.features.rules import (
    ENTERED_IN_ERROR,
    IGNORED_VERIFICATION_STATUSES,
    is_family_history_condition_coding,
    is_lung_cancer_coding,
)

FAMILY_MEMBER: Final = "FAMMEMB"
"""v3 RoleCode "family member": the relationship of a family history recorded as an ICD-10-CM Condition."""


def _onset_age_years(condition: Mapping[str, Any]) -> float | None:
    age = condition.get("onsetAge")
    if not isinstance(age, dict):
        return None
    value = age.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 130:
        return None
    unit = age.get("code") or age.get("unit")
    return float(value) if unit in (None, codes.UNIT_YEAR, "years", "yr") else None


def extract_family_history(records: Iterable[Mapping[str, Any]], as_of: date, notes: NoteSink
                           ) -> tuple[FamilyHistoryFact, ...]:
    out: list[FamilyHistoryFact] = []
    for index, resource in enumerate(records):
        ref = resource_key(resource, f"#{index}")
        lung = [c for c in items(resource, "condition")
                if isinstance(c, dict) and any(is_lung_cancer_coding(s, k) for s, k in codings(c.get("code")))]
        if not lung:
            continue
        if resource.get("status") == ENTERED_IN_ERROR:
            notes.info(NoteCode.ENTERED_IN_ERROR, ref, "family history of lung cancer is entered-in-error; ignored.")
            continue
        when = clinical_date(resource.get("date"))
        if when is not None and when > as_of:
            continue
        relationship_codes = [code.strip() for system, code in codings(resource.get("relationship"))
                              if code and code.strip() and system in (None, codes.V3_ROLE_CODE)]
        if not relationship_codes:
            notes.warning(NoteCode.MISSING_VALUE, ref, "family history of lung cancer without a relationship code.")
        first_degree = any(c in codes.FIRST_DEGREE_RELATIVE_CODES for c in relationship_codes)
        relationship = relationship_codes[0] if relationship_codes else "unknown"
        out.append(FamilyHistoryFact(relationship=relationship, first_degree=first_degree,
                                     source=source_ref(ref, when), onset_age_years=_onset_age_years(lung[0])))
    return tuple(out)


def family_history_from_conditions(conditions: Iterable[Mapping[str, Any]], as_of: date, notes: NoteSink
                                   ) -> tuple[FamilyHistoryFact, ...]:
    """Family history of lung cancer recorded as a Condition (ICD-10-CM Z80.1)."""
    out: list[FamilyHistoryFact] = []
    for index, resource in enumerate(conditions):
        if not any(is_family_history_condition_coding(s, c) for s, c in codings(resource.get("code"))):
            continue
        ref = resource_key(resource, f"#{index}")
        if coded_value(resource.get("verificationStatus")) in IGNORED_VERIFICATION_STATUSES:
            notes.info(NoteCode.ENTERED_IN_ERROR, ref,
                       "family history (Z80.1) is refuted or entered-in-error; ignored.")
            continue
        text = onset_text(resource)
        known = clinical_date(text) if text is not None else clinical_date(resource.get("recordedDate"))
        if known is not None and known > as_of:
            continue
        notes.info(NoteCode.UNSUPPORTED, ref,
                   "family history of lung cancer coded Z80.1 names no relative: counted as first-degree.")
        out.append(FamilyHistoryFact(relationship=FAMILY_MEMBER, first_degree=True, source=source_ref(ref, known)))
    return tuple(out)
