"""BMI: from a BMI Observation (LOINC 39156-5), else computed from body weight (29463-7) and height (8302-2).

Rule (shared with the polars path): the most recent BMI Observation on or before the as-of date wins; only
when there is none is BMI computed as weight_kg / (height_m × height_m) from the most recent weight and the
most recent height (each already converted to kg and cm by the unit tables in risk/features/rules.py). A
computed BMI outside the plausible BMI range is not used (noted). The computed value's source is DERIVED,
naming both Observations, dated by the later of the two.
"""

from __future__ import annotations

from risk import codes
from risk.domain.clinical import ObservedValue
from risk.domain.provenance import NoteCode, SourceKind, SourceRef
from risk.extract.fhirjson import source_ref
from risk.extract.notes import NoteSink
from risk.extract.observations import ObservationFacts
from risk.features.rules import UNITS_BMI, Role


def bmi_from(weight_kg: float, height_cm: float) -> float:
    """BMI in kg/m2 (the same operations as risk/features/bulk.py, so both give the same float)."""
    height_m = height_cm / 100.0
    return weight_kg / (height_m * height_m)


def extract_bmi(facts: ObservationFacts, notes: NoteSink) -> ObservedValue | None:
    recorded = facts.latest(Role.BMI)
    if recorded is not None:
        assert isinstance(recorded.value, float)
        return ObservedValue(recorded.value, codes.UNIT_KG_M2, source_ref(recorded.reference, recorded.effective))
    weight, height = facts.latest(Role.BODY_WEIGHT), facts.latest(Role.BODY_HEIGHT)
    if weight is None or height is None:
        return None
    assert isinstance(weight.value, float) and isinstance(height.value, float)
    value = bmi_from(weight.value, height.value)
    if not UNITS_BMI.low <= value <= UNITS_BMI.high:
        notes.warning(NoteCode.OUT_OF_RANGE, weight.reference,
                      f"BMI computed from {weight.value:g} kg and {height.value:g} cm is {value:.1f}; not used.")
        return None
    effective = max(weight.effective, height.effective)
    source = SourceRef(SourceKind.DERIVED, f"{weight.reference}+{height.reference}", effective)
    return ObservedValue(value, codes.UNIT_KG_M2, source)
