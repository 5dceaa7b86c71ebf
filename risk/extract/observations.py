"""Observations → facts: each usable Observation becomes one typed fact for one role.

This is the per-patient half of the mapping in risk/features/rules.py (read its docstring for the rules);
risk/features/bulk.py is the polars half. Whatever cannot be used is recorded as a note with the reason:
entered-in-error, unsupported status, no date, no value, unknown answer code, unit mismatch, out of range,
duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from risk.domain.provenance import NoteCode
from risk.domain.smoking import SmokingStatus
from risk.extract.fhirjson import clinical_date, codings, obj, resource_key
from risk.extract.notes import NoteSink
from risk.features.rules import (
    EDUCATION_ANSWERS,
    ENTERED_IN_ERROR,
    RULE_BY_CODING,
    SMOKING_STATUS_ANSWERS,
    USABLE_OBSERVATION_STATUSES,
    ObservationRule,
    Role,
    ValueKind,
)

FactValue = float | int | date | SmokingStatus
SortKey = tuple[date, str, str]

_EFFECTIVE_FIELDS = ("effectiveDateTime", "effectiveInstant")


@dataclass(slots=True)
class Fact:
    """One usable Observation value for one role, in the role's canonical unit.

    An intermediate of the mapping (never stored, never returned by ingestion), not frozen: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``, six times the cost of this one for nine fields,
    and a CDS call builds a fact per Observation (see risk.domain._value for the domain's own types)."""

    role: Role
    value: FactValue
    effective: date
    sort_key: SortKey
    reference: str
    unit: str | None = None
    original_unit: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None


@dataclass(slots=True)
class ObservationFacts:
    """Facts grouped by role, each list in chronological order (oldest first)."""

    by_role: dict[Role, list[Fact]]

    def of(self, role: Role) -> list[Fact]:
        return self.by_role.get(role, [])

    def latest(self, role: Role) -> Fact | None:
        facts = self.by_role.get(role)
        return facts[-1] if facts else None


def effective_text(resource: Mapping[str, Any]) -> str | None:
    """The first effective-like field present (a string), in the order fixed by the rules."""
    for name in _EFFECTIVE_FIELDS:
        value = resource.get(name)
        if isinstance(value, str):
            return value
    period = obj(resource, "effectivePeriod")
    if period is not None:
        for name in ("end", "start"):
            value = period.get(name)
            if isinstance(value, str):
                return value
    issued = resource.get("issued")
    return issued if isinstance(issued, str) else None


def match_rule(resource: Mapping[str, Any]) -> ObservationRule | None:
    concept = resource.get("code")
    coding = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(coding, list):
        return None
    for c in coding:
        if isinstance(c, dict):
            system, code = c.get("system"), c.get("code")
            if isinstance(system, str) and isinstance(code, str):
                rule = RULE_BY_CODING.get((system, code))
                if rule is not None:
                    return rule
    return None


def quantity_unit(quantity: Mapping[str, Any]) -> str | None:
    """``valueQuantity.code`` when present, else ``valueQuantity.unit`` (empty strings count as absent)."""
    code = quantity.get("code")
    if isinstance(code, str) and code:
        return code
    unit = quantity.get("unit")
    return unit if isinstance(unit, str) and unit else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def classify_observations(observations: Iterable[Mapping[str, Any]], as_of: date, notes: NoteSink) -> ObservationFacts:
    """Map every Observation that matches a rule to a fact; note the ones that cannot be used."""
    by_role: dict[Role, list[Fact]] = {}
    for index, resource in enumerate(observations):
        rule = match_rule(resource)
        if rule is None:
            continue
        ref = resource_key(resource, f"#{index}")
        fact = _fact(resource, rule, ref, as_of, notes)
        if fact is not None:
            by_role.setdefault(rule.role, []).append(fact)
    for role, facts in by_role.items():
        facts.sort(key=lambda f: f.sort_key)
        by_role[role] = _drop_duplicates(facts, notes)
    return ObservationFacts(by_role)


def _fact(resource: Mapping[str, Any], rule: ObservationRule, ref: str, as_of: date, notes: NoteSink) -> Fact | None:
    what = rule.code.display
    status = resource.get("status")
    if status == ENTERED_IN_ERROR:
        notes.info(NoteCode.ENTERED_IN_ERROR, ref, f"{what}: marked entered-in-error; ignored.")
        return None
    if status not in USABLE_OBSERVATION_STATUSES:
        if isinstance(status, str):
            notes.info(NoteCode.UNSUPPORTED, ref, f"{what}: status {status!r} is not final; ignored.")
        else:
            notes.warning(NoteCode.MALFORMED, ref, f"{what}: Observation.status is missing; ignored.")
        return None
    eff_text = effective_text(resource)
    effective = clinical_date(eff_text)
    if effective is None:
        reason = "has no effective date" if eff_text is None else f"has an unreadable date {eff_text!r}"
        notes.warning(NoteCode.MISSING_VALUE, ref, f"{what}: {reason}; ignored.")
        return None
    if effective > as_of:
        return None
    assert eff_text is not None
    rid = resource.get("id")
    sort_key = (effective, eff_text, rid if isinstance(rid, str) else "")
    if rule.kind is ValueKind.QUANTITY:
        return _quantity_fact(resource, rule, ref, effective, sort_key, notes)
    if rule.kind is ValueKind.CODED:
        return _coded_fact(resource, rule, ref, effective, sort_key, notes)
    raw = resource.get("valueDateTime")
    value = clinical_date(raw)
    if value is None:
        if raw is None:
            notes.warning(NoteCode.MISSING_VALUE, ref, f"{what}: no valueDateTime; ignored.")
        else:
            notes.warning(NoteCode.MALFORMED, ref, f"{what}: unreadable valueDateTime {raw!r}; ignored.")
        return None
    return Fact(rule.role, value, effective, sort_key, ref)


def _coded_fact(resource: Mapping[str, Any], rule: ObservationRule, ref: str, effective: date, sort_key: SortKey,
                notes: NoteSink) -> Fact | None:
    what = rule.code.display
    concept = resource.get("valueCodeableConcept")
    if not isinstance(concept, dict):
        notes.warning(NoteCode.MISSING_VALUE, ref, f"{what}: no valueCodeableConcept; ignored.")
        return None
    answers: Mapping[tuple[str, str], SmokingStatus | int] = (
        SMOKING_STATUS_ANSWERS if rule.role is Role.SMOKING_STATUS else EDUCATION_ANSWERS
    )
    seen: list[str] = []
    for system, code in codings(concept):
        answer = answers.get((system or "", code or ""))
        if answer is not None:
            return Fact(rule.role, answer, effective, sort_key, ref)
        seen.append(f"{system}|{code}")
    shown = ", ".join(seen) if seen else "no coding"
    notes.warning(NoteCode.UNKNOWN_CODE, ref, f"{what}: answer not recognised ({shown}); ignored.")
    return None


def _quantity_fact(resource: Mapping[str, Any], rule: ObservationRule, ref: str, effective: date,
                   sort_key: SortKey, notes: NoteSink) -> Fact | None:
    what = rule.code.display
    units = rule.units
    assert units is not None
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict) or "value" not in quantity:
        absent = resource.get("dataAbsentReason")
        why = f" (dataAbsentReason: {absent.get('text') or 'given'})" if isinstance(absent, dict) else ""
        notes.warning(NoteCode.MISSING_VALUE, ref, f"{what}: no valueQuantity.value{why}; ignored.")
        return None
    raw = _number(quantity.get("value"))
    if raw is None:
        notes.warning(NoteCode.MALFORMED, ref, f"{what}: valueQuantity.value is not a number; ignored.")
        return None
    unit = quantity_unit(quantity)
    factor = units.factor(unit)
    if factor is None:
        shown = "no unit" if unit is None else f"unit {unit!r}"
        notes.warning(NoteCode.UNIT_MISMATCH, ref,
                      f"{what}: {shown} is not convertible to {units.canonical!r}; ignored.")
        return None
    value = raw * factor
    if not units.low <= value <= units.high:
        notes.warning(NoteCode.OUT_OF_RANGE, ref,
                      f"{what}: {value:g} {units.canonical} is outside {units.low:g}-{units.high:g}; ignored.")
        return None
    if factor != 1.0:
        notes.info(NoteCode.UNIT_CONVERTED, ref,
                   f"{what}: {raw:g} {unit or '(no unit)'} converted to {value:g} {units.canonical}.")
    low, high = _reference_range(resource, units.factor)
    return Fact(rule.role, value, effective, sort_key, ref, units.canonical, unit, low, high)


def _reference_range(resource: Mapping[str, Any], factor_of: Any) -> tuple[float | None, float | None]:
    ranges = resource.get("referenceRange")
    if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
        return None, None
    out: list[float | None] = []
    for name in ("low", "high"):
        q = ranges[0].get(name)
        value = _number(q.get("value")) if isinstance(q, dict) else None
        factor = factor_of(quantity_unit(q)) if isinstance(q, dict) else None
        out.append(value * factor if value is not None and factor is not None else None)
    return out[0], out[1]


def _drop_duplicates(facts: list[Fact], notes: NoteSink) -> list[Fact]:
    """Keep one fact per (date, value): the most recent one, so "latest" is never changed by dropping.

    The same resource seen twice (e.g. in two prefetch keys) is dropped silently; another resource with
    the same date and value is noted as a duplicate.
    """
    kept: list[Fact] = []
    seen: dict[tuple[date, FactValue], str] = {}
    dropped: set[str] = set()
    for fact in reversed(facts):
        key = (fact.effective, fact.value)
        newer = seen.get(key)
        if newer is None:
            seen[key] = fact.reference
            kept.append(fact)
        elif newer != fact.reference and fact.reference not in dropped:
            dropped.add(fact.reference)
            notes.info(NoteCode.DUPLICATE, fact.reference,
                       f"{fact.role.value}: same value and date as {newer}; counted once.")
    kept.reverse()
    return kept
