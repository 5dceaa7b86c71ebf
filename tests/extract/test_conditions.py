from datetime import date

import pytest

from risk import codes
from risk.domain.clinical import ConditionKind
from risk.domain.provenance import NoteCode
from risk.domain.snapshot import PatientSnapshot
from risk.extract.snapshot import snapshot_from_resources
from risk.features.rules import icd10_kind
from tests.extract.builders import PID, condition, patient

AS_OF = date(2025, 1, 1)


def snap(*resources: dict) -> PatientSnapshot:
    return snapshot_from_resources([patient(), *resources], patient_id=PID, as_of=AS_OF)


@pytest.mark.parametrize(("system", "code", "kind"), [
    (codes.SNOMED, "13645005", ConditionKind.COPD),
    (codes.ICD10CM, "J44.9", ConditionKind.COPD),
    (codes.ICD10CM, "J44.1", ConditionKind.COPD),
    (codes.ICD10CM, "j440", ConditionKind.COPD),
    (codes.SNOMED, "87433001", ConditionKind.EMPHYSEMA),
    (codes.ICD10CM, "J43.2", ConditionKind.EMPHYSEMA),
    (codes.SNOMED, "363358000", ConditionKind.LUNG_CANCER),
    (codes.SNOMED, "93880001", ConditionKind.LUNG_CANCER),
    (codes.ICD10CM, "C34.90", ConditionKind.LUNG_CANCER),
    (codes.ICD10CM, "Z85.118", ConditionKind.LUNG_CANCER),
    (codes.ICD10CM, "C50.911", ConditionKind.PERSONAL_HISTORY_OF_CANCER),
    (codes.ICD10CM, "C78.00", ConditionKind.PERSONAL_HISTORY_OF_CANCER),
    (codes.ICD10CM, "Z85.3", ConditionKind.PERSONAL_HISTORY_OF_CANCER),
    (codes.SNOMED, "266987004", ConditionKind.PERSONAL_HISTORY_OF_CANCER),
    (codes.ICD10CM, "D84.9", ConditionKind.IMMUNOCOMPROMISED),
    (codes.ICD10CM, "B20", ConditionKind.IMMUNOCOMPROMISED),
    (codes.SNOMED, "234532001", ConditionKind.IMMUNOCOMPROMISED),
])
def test_snomed_and_icd10cm_both_recognised(system: str, code: str, kind: ConditionKind) -> None:
    s = snap(condition(system, code, onset="2020-01-01"))
    (fact,) = s.conditions
    assert (fact.kind, fact.code, fact.system, fact.onset) == (kind, code, system, date(2020, 1, 1))


@pytest.mark.parametrize("code", ["I10", "D04.5", "C97", "Z80.1", ""])
def test_other_icd_codes_are_not_mapped(code: str) -> None:
    assert icd10_kind(code) is None


def test_lung_cancer_is_never_another_cancer() -> None:
    s = snap(condition(codes.ICD10CM, "C34.11", onset="2023-04-02"))
    assert s.has_condition(ConditionKind.LUNG_CANCER)
    assert not s.has_condition(ConditionKind.PERSONAL_HISTORY_OF_CANCER)


def test_refuted_and_entered_in_error_are_ignored_with_notes() -> None:
    s = snap(condition(codes.SNOMED, codes.COPD.code, verification="refuted"),
             condition(codes.SNOMED, codes.COPD.code, verification="entered-in-error"),
             condition(codes.SNOMED, codes.EMPHYSEMA.code, verification="provisional"))
    assert [c.kind for c in s.conditions] == [ConditionKind.EMPHYSEMA]
    assert sorted(n.code for n in s.notes) == [NoteCode.ENTERED_IN_ERROR, NoteCode.UNSUPPORTED]


def test_resolved_conditions_stay_as_history() -> None:
    s = snap(condition(codes.SNOMED, codes.COPD.code, clinical="resolved"),
             condition(codes.SNOMED, codes.EMPHYSEMA.code, clinical=None))
    assert [(c.kind, c.active) for c in s.conditions] == [(ConditionKind.COPD, False), (ConditionKind.EMPHYSEMA, True)]


def test_as_of_uses_onset_then_recorded_date() -> None:
    s = snap(condition(codes.SNOMED, codes.COPD.code, onset="2025-06-01"),
             condition(codes.SNOMED, codes.EMPHYSEMA.code, recordedDate="2025-02-01"),
             condition(codes.SNOMED, codes.LUNG_CANCER.code, onsetPeriod={"start": "2024-12"}),
             condition(codes.ICD10CM, "D84.9"))
    assert [(c.kind, c.onset) for c in s.conditions] == [(ConditionKind.LUNG_CANCER, date(2024, 12, 1)),
                                                         (ConditionKind.IMMUNOCOMPROMISED, None)]


def test_condition_without_code_is_noted() -> None:
    c = condition(codes.SNOMED, codes.COPD.code)
    del c["code"]
    s = snap(c)
    assert s.conditions == () and [n.code for n in s.notes] == [NoteCode.MALFORMED]
