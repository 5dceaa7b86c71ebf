from datetime import date

from risk import codes
from risk.domain.provenance import NoteCode
from risk.domain.snapshot import PatientSnapshot
from risk.extract.snapshot import snapshot_from_resources
from tests.extract.builders import PID, family_history, patient

AS_OF = date(2025, 1, 1)


def snap(*resources: dict) -> PatientSnapshot:
    return snapshot_from_resources([patient(), *resources], patient_id=PID, as_of=AS_OF)


def test_first_degree_relative_with_lung_cancer() -> None:
    s = snap(family_history("FTH"))
    (fact,) = s.family_history
    assert fact.first_degree and fact.relationship == "FTH" and fact.onset_age_years == 64
    assert s.family_history_lung_cancer


def test_second_degree_relative_is_recorded_but_not_first_degree() -> None:
    s = snap(family_history("GRMTH"))
    assert [f.first_degree for f in s.family_history] == [False]
    assert not s.family_history_lung_cancer


def test_icd_lung_cancer_counts_and_other_conditions_do_not() -> None:
    icd = family_history("SIS")
    icd["condition"][0]["code"] = {"coding": [{"system": codes.ICD10CM, "code": "C34.1"}]}
    other = family_history("BRO", codes.COPD)
    s = snap(icd, other)
    assert [f.relationship for f in s.family_history] == ["SIS"]


def test_entered_in_error_and_future_records_ignored() -> None:
    s = snap(family_history("MTH", status="entered-in-error"), family_history("SON", date="2026-01-01"))
    assert s.family_history == ()
    assert [n.code for n in s.notes] == [NoteCode.ENTERED_IN_ERROR]


def test_relationship_in_another_system_is_not_trusted() -> None:
    f = family_history("FTH")
    f["relationship"]["coding"][0]["system"] = "http://example.org/local"
    s = snap(f)
    assert [(x.relationship, x.first_degree) for x in s.family_history] == [("unknown", False)]
    assert [n.code for n in s.notes] == [NoteCode.MISSING_VALUE]


def test_icd_z80_1_condition_counts_as_first_degree_with_a_note() -> None:
    from tests.extract.builders import condition

    s = snap(condition(codes.ICD10CM, "Z80.1", cid="fh", clinical=None, recordedDate="2020-01-01"),
             condition(codes.ICD10CM, "Z80.1", verification="refuted"),
             condition(codes.ICD10CM, "Z80.1", onset="2026-01-01"))
    assert [(f.relationship, f.first_degree, f.source.reference) for f in s.family_history] == [
        ("FAMMEMB", True, "Condition/fh")]
    assert s.family_history_lung_cancer and s.conditions == ()
    assert sorted(n.code for n in s.notes) == [NoteCode.ENTERED_IN_ERROR, NoteCode.UNSUPPORTED]
