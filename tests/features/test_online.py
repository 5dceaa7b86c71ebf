from datetime import date

from risk import codes
from risk.domain.clinical import ConditionFact, ConditionKind, LabResult
from risk.domain.imaging import ImagingStudyRef
from risk.domain.patient import AdministrativeSex, Demographics, RaceEthnicity
from risk.domain.provenance import fhir_ref
from risk.domain.smoking import SmokingHistory, SmokingStatus
from risk.domain.snapshot import PatientSnapshot
from risk.features.online import feature_frame, features_from_snapshot
from risk.features.schema import FEATURE_COLUMNS

AS_OF = date(2025, 1, 1)


def test_row_from_a_snapshot() -> None:
    src = fhir_ref("Patient", "p")
    snap = PatientSnapshot(
        patient_id="p", as_of=AS_OF,
        demographics=Demographics(date(1960, 2, 1), AdministrativeSex.MALE, src, RaceEthnicity.BLACK),
        smoking=SmokingHistory.build(SmokingStatus.FORMER, (src,), cigarettes_per_day=20, smoking_duration_years=30,
                                     quit_date=date(2015, 1, 1)),
        conditions=(ConditionFact(ConditionKind.LUNG_CANCER, "C34.1", codes.ICD10CM, src, onset=date(2024, 5, 1)),
                    ConditionFact(ConditionKind.LUNG_CANCER, "363358000", codes.SNOMED, src, onset=date(2024, 3, 1)),
                    ConditionFact(ConditionKind.COPD, "J44.9", codes.ICD10CM, src)),
        labs=(LabResult(codes.CRP, 3.0, "mg/L", date(2023, 1, 1), src),
              LabResult(codes.CRP, 9.0, "mg/L", date(2024, 1, 1), src)),
        imaging_studies=(ImagingStudyRef("1.2", "CT", date(2023, 2, 1), src),
                         ImagingStudyRef("1.3", "CT", date(2024, 2, 1), src),
                         ImagingStudyRef("1.4", "MR", date(2024, 6, 1), src)),
    )
    row = features_from_snapshot(snap)
    assert tuple(row) == FEATURE_COLUMNS
    assert (row["age_years"], row["sex"], row["race_ethnicity"]) == (64, "male", "black")
    assert (row["smoking_status"], row["pack_years"], row["years_since_quit"]) == ("former", 30.0, 3653 / 365.25)
    assert (row["copd"], row["emphysema"], row["lung_cancer"], row["lung_cancer_onset"]) == (
        True, False, True, date(2024, 3, 1))
    assert (row["crp"], row["crp_date"], row["wbc"]) == (9.0, date(2024, 1, 1), None)
    assert (row["last_ct_date"], row["ct_study_count"]) == (date(2024, 2, 1), 2)
    assert feature_frame([snap]).height == 1


def test_empty_snapshot_row() -> None:
    row = features_from_snapshot(PatientSnapshot(patient_id="q", as_of=AS_OF, demographics=None))
    assert row["age_years"] is None and row["copd"] is False and row["smoking_status"] is None
    assert row["ct_study_count"] == 0
