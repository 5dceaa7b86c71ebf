from datetime import date

from risk import codes
from risk.domain.provenance import NoteCode, NoteSeverity
from risk.extract.notes import NoteSink
from risk.extract.observations import classify_observations
from risk.features.rules import Role
from tests.extract.builders import observation, quantity

AS_OF = date(2025, 1, 1)


def classify(*resources: dict) -> tuple[dict, list]:
    notes = NoteSink()
    facts = classify_observations(resources, AS_OF, notes)
    return facts.by_role, notes.notes


def only_note(notes: list, code: NoteCode, severity: NoteSeverity | None = None) -> None:
    assert [n.code for n in notes] == [code], notes
    if severity is not None:
        assert notes[0].severity is severity


def test_unrelated_codes_are_ignored_without_notes() -> None:
    other = observation(codes.BMI, **quantity(27, "kg/m2"))
    other["code"] = {"coding": [{"system": codes.LOINC, "code": "8867-4"}]}
    by_role, notes = classify(other)
    assert by_role == {} and notes == []


def test_any_coding_of_the_code_can_match() -> None:
    obs = observation(codes.BMI, **quantity(27.5, "kg/m2"))
    obs["code"]["coding"].insert(0, {"system": "http://local", "code": "BMI"})
    by_role, _ = classify(obs)
    assert by_role[Role.BMI][0].value == 27.5


def test_entered_in_error_preliminary_and_missing_status() -> None:
    _, notes = classify(observation(codes.BMI, status="entered-in-error", **quantity(27, "kg/m2")))
    only_note(notes, NoteCode.ENTERED_IN_ERROR, NoteSeverity.INFO)
    _, notes = classify(observation(codes.BMI, status="preliminary", **quantity(27, "kg/m2")))
    only_note(notes, NoteCode.UNSUPPORTED)
    obs = observation(codes.BMI, **quantity(27, "kg/m2"))
    del obs["status"]
    _, notes = classify(obs)
    only_note(notes, NoteCode.MALFORMED, NoteSeverity.WARNING)


def test_dates_missing_unreadable_and_after_as_of() -> None:
    by_role, notes = classify(observation(codes.BMI, None, **quantity(27, "kg/m2")))
    assert by_role == {}
    only_note(notes, NoteCode.MISSING_VALUE)
    _, notes = classify(observation(codes.BMI, "yesterday", **quantity(27, "kg/m2")))
    only_note(notes, NoteCode.MISSING_VALUE)
    by_role, notes = classify(observation(codes.BMI, "2025-01-02", **quantity(27, "kg/m2")))
    assert by_role == {} and notes == []


def test_effective_period_and_issued_are_fallbacks() -> None:
    a = observation(codes.BMI, None, effectivePeriod={"start": "2020-01-01", "end": "2020-02-01"},
                    **quantity(20, "kg/m2"))
    b = observation(codes.BMI, None, issued="2021-03-04T10:00:00Z", **quantity(21, "kg/m2"))
    by_role, _ = classify(a, b)
    assert [(f.effective, f.value) for f in by_role[Role.BMI]] == [(date(2020, 2, 1), 20.0), (date(2021, 3, 4), 21.0)]


def test_missing_value_and_wrong_type() -> None:
    obs = observation(codes.HEMOGLOBIN, dataAbsentReason={"text": "hemolysed"})
    _, notes = classify(obs)
    only_note(notes, NoteCode.MISSING_VALUE, NoteSeverity.WARNING)
    assert "hemolysed" in notes[0].message
    _, notes = classify(observation(codes.HEMOGLOBIN, **quantity("13.5", "g/dL")))
    only_note(notes, NoteCode.MALFORMED)
    _, notes = classify(observation(codes.HEMOGLOBIN, **quantity(True, "g/dL")))
    only_note(notes, NoteCode.MALFORMED)


def test_units_are_converted_and_unknown_units_skipped() -> None:
    by_role, notes = classify(observation(codes.HEMOGLOBIN, **quantity(135, "g/L")))
    fact = by_role[Role.HEMOGLOBIN][0]
    assert (fact.value, fact.unit, fact.original_unit) == (13.5, "g/dL", "g/L")
    only_note(notes, NoteCode.UNIT_CONVERTED, NoteSeverity.INFO)
    by_role, notes = classify(observation(codes.HEMOGLOBIN, **quantity(13.5, "mg/mL")))
    assert by_role == {}
    only_note(notes, NoteCode.UNIT_MISMATCH, NoteSeverity.WARNING)
    assert "mg/mL" in notes[0].message
    _, notes = classify(observation(codes.HEMOGLOBIN, **quantity(13.5)))
    only_note(notes, NoteCode.UNIT_MISMATCH)


def test_human_readable_unit_used_when_code_is_absent() -> None:
    by_role, notes = classify(observation(codes.BODY_WEIGHT, **quantity(176.0, "lbs", ucum=False)))
    assert by_role[Role.BODY_WEIGHT][0].value == 176.0 * 0.45359237
    only_note(notes, NoteCode.UNIT_CONVERTED)


def test_unit_optional_where_the_code_fixes_it() -> None:
    by_role, notes = classify(observation(codes.PACK_YEARS, **quantity(30)))
    assert by_role[Role.PACK_YEARS][0].value == 30.0 and notes == []


def test_out_of_range_after_conversion() -> None:
    by_role, notes = classify(observation(codes.BODY_HEIGHT, **quantity(17.5, "m")))
    assert by_role == {}
    only_note(notes, NoteCode.OUT_OF_RANGE)


def test_reference_range_converted_with_the_value() -> None:
    obs = observation(codes.ALBUMIN, **quantity(40, "g/L"),
                      referenceRange=[{"low": {"value": 35, "unit": "g/L", "code": "g/L"},
                                       "high": {"value": 50, "unit": "g/L", "code": "g/L"}}])
    fact = classify(obs)[0][Role.ALBUMIN][0]
    assert (fact.value, fact.reference_low, fact.reference_high) == (4.0, 3.5, 5.0)


def test_duplicates_counted_once_and_latest_kept() -> None:
    a = observation(codes.CRP, "2024-01-01", oid="a", **quantity(5, "mg/L"))
    b = observation(codes.CRP, "2024-01-01T08:00:00Z", oid="b", **quantity(5, "mg/L"))
    c = observation(codes.CRP, "2024-01-01T07:00:00Z", oid="c", **quantity(9, "mg/L"))
    by_role, notes = classify(a, b, c, dict(a))
    facts = by_role[Role.CRP]
    assert [f.reference for f in facts] == ["Observation/c", "Observation/b"]  # a is the older duplicate of b
    only_note(notes, NoteCode.DUPLICATE, NoteSeverity.INFO)
    assert notes[0].source == "Observation/a"


def test_unknown_answer_code() -> None:
    obs = observation(codes.SMOKING_STATUS, valueCodeableConcept={"coding": [{"system": codes.SNOMED, "code": "1"}]})
    by_role, notes = classify(obs)
    assert by_role == {}
    only_note(notes, NoteCode.UNKNOWN_CODE, NoteSeverity.WARNING)
    _, notes = classify(observation(codes.SMOKING_STATUS))
    only_note(notes, NoteCode.MISSING_VALUE)
