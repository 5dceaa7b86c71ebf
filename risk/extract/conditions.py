"""Conditions → ConditionFact: COPD, emphysema, personal history of cancer, lung cancer, immunocompromise.

Codes: SNOMED CT and ICD-10-CM both (interop.md §3.4; tables in risk/features/rules.py). The first coding
that maps to a kind decides. Verification status: ``entered-in-error`` and ``refuted`` conditions are
ignored and noted; any other (confirmed, unconfirmed, provisional, differential, or none) counts.
Clinical status: active / recurrence / relapse, or none, give ``active=True``; inactive / remission /
resolved give ``active=False`` (still history: the models ask "ever diagnosed"). Dates: the onset is
``onsetDateTime``, else ``onsetPeriod.start``; a condition counts when its onset (or, without one, its
``recordedDate``) is on or before the as-of date, or unknown. Lung cancer is the outcome: its onset is
kept; it never counts as "personal history of (another) cancer".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from risk.domain.clinical import ConditionFact, ConditionKind
from risk.domain.provenance import NoteCode
from risk.extract.fhirjson import clinical_date, coded_value, codings, obj, resource_key, source_ref
from risk.extract.notes import NoteSink
from risk.features.rules import IGNORED_VERIFICATION_STATUSES, INACTIVE_CLINICAL_STATUSES, condition_kind


def onset_text(resource: Mapping[str, Any]) -> str | None:
    value = resource.get("onsetDateTime")
    if isinstance(value, str):
        return value
    period = obj(resource, "onsetPeriod")
    start = period.get("start") if period is not None else None
    return start if isinstance(start, str) else None


def extract_conditions(conditions: Iterable[Mapping[str, Any]], as_of: date, notes: NoteSink
                       ) -> tuple[ConditionFact, ...]:
    out: list[ConditionFact] = []
    for index, resource in enumerate(conditions):
        ref = resource_key(resource, f"#{index}")
        matched: tuple[ConditionKind, str, str] | None = None
        any_coding = False
        for system, code in codings(resource.get("code")):
            any_coding = True
            kind = condition_kind(system, code)
            if kind is not None and system is not None and code is not None and code.strip():
                matched = (kind, system, code)
                break
        if matched is None:
            if not any_coding:
                notes.warning(NoteCode.MALFORMED, ref, "Condition has no coded code; ignored.")
            continue
        kind, system, code = matched
        verification = coded_value(resource.get("verificationStatus"))
        if verification in IGNORED_VERIFICATION_STATUSES:
            note = NoteCode.ENTERED_IN_ERROR if verification == "entered-in-error" else NoteCode.UNSUPPORTED
            notes.info(note, ref, f"{kind.value} ({code}) is {verification}; ignored.")
            continue
        text = onset_text(resource)
        onset = clinical_date(text)
        known = onset if text is not None else clinical_date(resource.get("recordedDate"))
        if known is not None and known > as_of:
            continue
        active = coded_value(resource.get("clinicalStatus")) not in INACTIVE_CLINICAL_STATUSES
        out.append(ConditionFact(kind=kind, code=code, system=system, source=source_ref(ref, known), onset=onset,
                                 active=active))
    return tuple(out)
