from datetime import date

import pytest

from risk import codes
from risk.domain.provenance import NoteCode
from risk.extract.snapshot import snapshot_from_resources
from tests.extract.builders import PID, observation, patient, quantity

AS_OF = date(2025, 1, 1)


@pytest.mark.parametrize(("code", "value", "unit", "expected", "canonical"), [
    (codes.WBC, 7.1, "10*9/L", 7.1, "10*3/uL"),
    (codes.WBC, 7100, "/uL", 7.1, "10*3/uL"),
    (codes.HEMOGLOBIN, 8.5, "mmol/L", 8.5 * 1.61145, "g/dL"),
    (codes.PLATELETS, 250, "10*9/L", 250, "10*3/uL"),
    (codes.NEUTROPHILS, 4.2, "10*3/uL", 4.2, "10*3/uL"),
    (codes.LYMPHOCYTES, 1.9, "K/uL", 1.9, "10*3/uL"),
    (codes.CRP, 1.2, "mg/dL", 12.0, "mg/L"),
    (codes.ALBUMIN, 41, "g/L", 4.1, "g/dL"),
    (codes.CEA, 3.1, "ug/L", 3.1, "ng/mL"),
    (codes.FEV1, 2650, "mL", 2.65, "L"),
    (codes.FEV1_FVC, 0.68, "1", 68.0, "%"),
])
def test_panel_conversions(code: codes.Code, value: float, unit: str, expected: float, canonical: str) -> None:
    s = snapshot_from_resources([patient(), observation(code, "2024-06-01", **quantity(value, unit))],
                                patient_id=PID, as_of=AS_OF)
    (lab,) = s.labs
    assert lab.code == code and lab.unit == canonical and lab.original_unit == unit
    assert lab.value == pytest.approx(expected, rel=1e-12)
    assert lab.effective == date(2024, 6, 1) and lab.source.effective == date(2024, 6, 1)


def test_history_is_kept_oldest_first_and_unknown_units_skipped() -> None:
    s = snapshot_from_resources([
        patient(),
        observation(codes.CRP, "2024-06-01", **quantity(3, "mg/L")),
        observation(codes.CRP, "2023-06-01", **quantity(0.5, "mg/dL")),
        observation(codes.CRP, "2024-07-01", **quantity(3, "mmol/L")),
    ], patient_id=PID, as_of=AS_OF)
    assert [(lab.effective, lab.value) for lab in s.labs] == [(date(2023, 6, 1), 5.0), (date(2024, 6, 1), 3.0)]
    assert NoteCode.UNIT_MISMATCH in [n.code for n in s.notes]
