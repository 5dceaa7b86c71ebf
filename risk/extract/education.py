"""Education (LOINC 82589-3 Highest level of education) as the PLCOm2012 level 1-6.

The answer must be a coding in the project's PLCO education code system (risk.codes
PLCO_EDUCATION_LEVEL_SYSTEM, codes "1"-"6"); other answers are noted as unknown codes (a site that
records another answer list maps it in risk/features/rules.py EDUCATION_ANSWERS). Most recent wins.
"""

from __future__ import annotations

from risk.domain.clinical import EducationLevel
from risk.extract.fhirjson import source_ref
from risk.extract.observations import ObservationFacts
from risk.features.rules import Role


def extract_education(facts: ObservationFacts) -> EducationLevel | None:
    fact = facts.latest(Role.EDUCATION)
    if fact is None:
        return None
    assert isinstance(fact.value, int)
    return EducationLevel(fact.value, source_ref(fact.reference, fact.effective))
