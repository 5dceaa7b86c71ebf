"""The laboratory and spirometry panel, converted to one canonical UCUM unit per test.

The panel (codes in risk/codes.py, unit tables in risk/features/rules.py):

=============  ==========  ==========  ==============================================================
Test           LOINC       Canonical   Accepted units → factor
=============  ==========  ==========  ==============================================================
WBC            6690-2      10*3/uL     10*9/L, 10^9/L, 10^3/uL, 10*3/mm3, K/uL ×1; /uL, /mm3 ×0.001
Hemoglobin     718-7       g/dL        g/L ×0.1; mg/dL ×0.001; mmol/L ×1.61145 (monomer basis)
Platelets      777-3       10*3/uL     as WBC
Neutrophils    751-8       10*3/uL     as WBC
Lymphocytes    731-0       10*3/uL     as WBC
CRP            1988-5      mg/L        mg/dL ×10; ug/mL ×1
Albumin        1751-7      g/dL        g/L ×0.1
CEA            2039-6      ng/mL       ug/L ×1
FEV1           20150-9     L           mL ×0.001
FEV1/FVC       19926-5     %           1, {ratio} ×100
=============  ==========  ==========  ==============================================================

Why these: the CBC (WBC, neutrophil and lymphocyte counts: systemic inflammation, e.g. the
neutrophil-to-lymphocyte ratio), CRP and albumin (inflammation, nutrition) and CEA are the routine labs
most often studied as lung-cancer risk or prognosis markers; FEV1 and FEV1/FVC quantify airflow
obstruction (COPD is a PLCOm2012 input; spirometry measures it directly). No lab is mandated by any
lung-risk standard (interop.md §3.3), so the panel is a documented choice that sites can extend in
rules.py. Each result keeps its date (``effective``), its original unit and its reference range
(converted); values in an unknown unit are skipped with a UNIT_MISMATCH note, never guessed.
"""

from __future__ import annotations

from risk.domain.clinical import LabResult
from risk.extract.fhirjson import source_ref
from risk.extract.observations import ObservationFacts
from risk.features.rules import LAB_CODE_BY_ROLE, LAB_ROLES


def extract_labs(facts: ObservationFacts) -> tuple[LabResult, ...]:
    """Every panel result on or before the as-of date, by test then date (oldest first)."""
    out: list[LabResult] = []
    for role in LAB_ROLES:
        code = LAB_CODE_BY_ROLE[role]
        for fact in facts.of(role):
            assert isinstance(fact.value, float) and fact.unit is not None
            out.append(LabResult(code=code, value=fact.value, unit=fact.unit, effective=fact.effective,
                                 source=source_ref(fact.reference, fact.effective),
                                 reference_low=fact.reference_low, reference_high=fact.reference_high,
                                 original_unit=fact.original_unit))
    return tuple(out)
