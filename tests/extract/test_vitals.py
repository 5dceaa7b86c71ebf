from datetime import date

from risk import codes
from risk.domain.provenance import NoteCode, SourceKind
from risk.domain.snapshot import PatientSnapshot
from risk.extract.snapshot import snapshot_from_resources
from risk.extract.vitals import bmi_from
from tests.extract.builders import PID, observation, patient, quantity

AS_OF = date(2025, 1, 1)


def snap(*resources: dict) -> PatientSnapshot:
    return snapshot_from_resources([patient(), *resources], patient_id=PID, as_of=AS_OF)


def test_recorded_bmi_wins_over_weight_and_height() -> None:
    s = snap(observation(codes.BMI, "2020-01-01", oid="b", **quantity(31.2, "kg/m2")),
             observation(codes.BODY_WEIGHT, "2024-01-01", **quantity(70, "kg")),
             observation(codes.BODY_HEIGHT, "2024-01-01", **quantity(170, "cm")))
    assert s.bmi is not None and s.bmi.value == 31.2 and s.bmi.source.reference == "Observation/b"
    assert s.bmi.effective == date(2020, 1, 1)


def test_bmi_computed_from_weight_and_height_in_other_units() -> None:
    s = snap(observation(codes.BODY_WEIGHT, "2024-02-01", oid="w", **quantity(154.0, "[lb_av]")),
             observation(codes.BODY_HEIGHT, "2023-01-01", oid="h", **quantity(68.0, "[in_i]")))
    assert s.bmi is not None
    assert s.bmi.value == bmi_from(154.0 * 0.45359237, 68.0 * 2.54)
    assert abs(s.bmi.value - 23.4) < 0.05  # 154 lb at 5 ft 8 in
    assert s.bmi.source.kind is SourceKind.DERIVED
    assert s.bmi.source.reference == "Observation/w+Observation/h" and s.bmi.effective == date(2024, 2, 1)


def test_no_bmi_without_both_weight_and_height() -> None:
    assert snap(observation(codes.BODY_WEIGHT, **quantity(70, "kg"))).bmi is None


def test_implausible_computed_bmi_noted() -> None:
    s = snap(observation(codes.BODY_WEIGHT, **quantity(390, "kg")),
             observation(codes.BODY_HEIGHT, **quantity(60, "cm")))
    assert s.bmi is None
    assert NoteCode.OUT_OF_RANGE in [n.code for n in s.notes]


def test_education_level() -> None:
    edu = observation(codes.HIGHEST_EDUCATION,
                      valueCodeableConcept={"coding": [codes.PLCO_EDUCATION_LEVELS["5"].coding()]})
    s = snap(edu)
    assert s.education is not None and s.education.level == 5
    bad = observation(codes.HIGHEST_EDUCATION, valueCodeableConcept={"coding": [{"system": "x", "code": "BA"}]})
    s = snap(bad)
    assert s.education is None and [n.code for n in s.notes] == [NoteCode.UNKNOWN_CODE]
