"""Smoking history from Observations, reconciled (rules: risk/features/rules.py, "Smoking reconciliation").

Codes (verified in risk/codes.py against reference/interop.md §3.2):
  status      LOINC 72166-2 Tobacco smoking status (US Core Smoking Status profile), also 11367-0 History of
              tobacco use and 76691-5 Tobacco smoking status NHIS, each with the US Core 6.1.0 SNOMED answers
              (449868002 current every day, 428041000124106 current some day, 8517006 former, 266919005 never,
              77176002 smoker status unknown, 266927001 unknown if ever smoked, 428071000124103 heavy,
              428061000124105 light);
  pack-years  SNOMED 401201003 Cigarette pack-years (US Core example) and 782516008 calculated pack-years;
  intensity   LOINC 64218-1 cigarettes per day (PhenX) or 8663-7 packs per day (× 20);
  duration    LOINC 88029-4 Tobacco use duration;
  quit        LOINC 74010-0 Date quit tobacco smoking, or 63632-4 years since quitting (TUS-CPS).
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from risk.domain.provenance import NoteCode, SourceRef
from risk.domain.smoking import SmokingHistory, SmokingStatus, pack_years_from
from risk.extract.fhirjson import source_ref
from risk.extract.notes import NoteSink
from risk.extract.observations import Fact, ObservationFacts, SortKey
from risk.features.rules import DAYS_PER_YEAR, PACK_YEARS_MAX, SMOKING_ROLES, Role


def quit_date_from_years(effective: date, years: float) -> date:
    """The quit date implied by "quit ``years`` ago" recorded on ``effective`` (whole days, floored)."""
    return effective - timedelta(days=int(years * DAYS_PER_YEAR))


def extract_smoking(facts: ObservationFacts, notes: NoteSink) -> SmokingHistory | None:
    """Reconcile the smoking facts into one history (None when there is no smoking record at all)."""
    if not any(facts.of(role) for role in SMOKING_ROLES):
        return None
    statuses = facts.of(Role.SMOKING_STATUS)
    status_fact = statuses[-1] if statuses else None
    status = status_fact.value if status_fact is not None else SmokingStatus.UNKNOWN
    assert isinstance(status, SmokingStatus)
    anchor = status_fact.reference if status_fact is not None else _first_reference(facts)
    conflicts = _conflicts(facts, status_fact)

    used: list[Fact] = [f for f in (status_fact,) if f is not None]
    pack_years = _latest_number(facts, Role.PACK_YEARS, used)
    cigarettes = _latest_number(facts, Role.CIGARETTES_PER_DAY, used)
    duration = _latest_number(facts, Role.SMOKING_DURATION, used)
    quit_date = _latest_quit_date(facts, used)

    if status is SmokingStatus.NEVER:
        dropped = [name for name, value in (("cigarettes/day", cigarettes), ("years smoked", duration),
                                            ("pack-years", pack_years if pack_years else None),
                                            ("quit date", quit_date)) if value is not None]
        if dropped:
            conflicts.append(f"most recent status is never-smoker: ignored {', '.join(dropped)}")
        cigarettes = duration = None
        quit_date = None
        pack_years = 0.0
    elif status is SmokingStatus.CURRENT and quit_date is not None:
        conflicts.append(f"most recent status is current smoker: ignored quit date {quit_date.isoformat()}")
        quit_date = None

    derived = False
    if pack_years is None and cigarettes is not None and duration is not None:
        candidate = pack_years_from(cigarettes, duration)
        if candidate > PACK_YEARS_MAX:
            notes.warning(NoteCode.OUT_OF_RANGE, anchor,
                          f"pack-years derived from {cigarettes:g} cigarettes/day × {duration:g} years = "
                          f"{candidate:g} is implausible; not used.")
        else:
            pack_years, derived = candidate, True

    for text in conflicts:
        notes.info(NoteCode.CONFLICT, anchor, f"smoking history: {text}.")
    sources = tuple(_ref(f) for f in sorted(used, key=lambda f: f.sort_key))
    return SmokingHistory(status=status, sources=sources, cigarettes_per_day=cigarettes,
                          smoking_duration_years=duration, pack_years=pack_years, pack_years_derived=derived,
                          quit_date=quit_date, conflicts=tuple(conflicts))


def _ref(fact: Fact) -> SourceRef:
    return source_ref(fact.reference, fact.effective)


def _first_reference(facts: ObservationFacts) -> str:
    for role in (Role.PACK_YEARS, Role.CIGARETTES_PER_DAY, Role.SMOKING_DURATION, Role.QUIT_DATE,
                 Role.YEARS_SINCE_QUIT):
        if facts.of(role):
            return facts.of(role)[-1].reference
    return "Observation"


def _latest_number(facts: ObservationFacts, role: Role, used: list[Fact]) -> float | None:
    fact = facts.latest(role)
    if fact is None:
        return None
    used.append(fact)
    assert isinstance(fact.value, float)
    return fact.value


def _latest_quit_date(facts: ObservationFacts, used: list[Fact]) -> date | None:
    candidates: list[tuple[SortKey, date, Fact]] = []
    for fact in facts.of(Role.QUIT_DATE):
        assert isinstance(fact.value, date)
        candidates.append((fact.sort_key, fact.value, fact))
    for fact in facts.of(Role.YEARS_SINCE_QUIT):
        assert isinstance(fact.value, float)
        candidates.append((fact.sort_key, quit_date_from_years(fact.effective, fact.value), fact))
    if not candidates:
        return None
    _key, value, fact = max(candidates, key=lambda c: c[0])
    used.append(fact)
    return value


def _conflicts(facts: ObservationFacts, status_fact: Fact | None) -> list[str]:
    out: list[str] = []
    statuses = facts.of(Role.SMOKING_STATUS)
    values = {f.value for f in statuses}
    if SmokingStatus.NEVER in values and values & {SmokingStatus.CURRENT, SmokingStatus.FORMER}:
        history = "; ".join(f"{f.value} ({f.reference}, {f.effective.isoformat()})" for f in statuses)
        assert status_fact is not None
        out.append(f"never-smoker and ever-smoker records disagree [{history}]; most recent used: "
                   f"{status_fact.value}")
    for role in SMOKING_ROLES:
        by_day: dict[date, set[object]] = {}
        for f in facts.of(role):
            by_day.setdefault(f.effective, set()).add(f.value)
        for day, day_values in sorted(by_day.items()):
            if len(day_values) > 1:
                out.append(f"{role.value}: different values on {day.isoformat()} "
                           f"({', '.join(sorted(map(str, day_values)))}); the last recorded used")
    pack_years = facts.of(Role.PACK_YEARS)
    for earlier, later in itertools.pairwise(pack_years):
        assert isinstance(earlier.value, float) and isinstance(later.value, float)
        if later.value < earlier.value:
            out.append(f"pack-years decreased from {earlier.value:g} ({earlier.effective.isoformat()}) to "
                       f"{later.value:g} ({later.effective.isoformat()}); most recent used")
            break
    return out
