"""PatientSnapshot → the fusion models' feature rows (online), and the mapping the offline table shares.

The fusion feature row = the EHR feature row of risk/features/schema.py (``features_from_snapshot`` online,
``build_feature_table`` offline; tests/features/test_bulk.py checks they agree) mapped by :func:`ehr_to_fusion`,
plus the imaging features of risk/features/imaging.py. risk/features/training_table.py runs the *same*
functions over the offline tables, and tests/features/test_fusion_row.py checks that the online row equals the
offline row for the same patients.

Mapping rules (EHR row → fusion features; fusion_models/features.py names and units):

* ``sex``: female/male; other/unknown → missing. ``smoking_status`` unknown → missing (the model abstains: it is
  a required input of the patient task). Booleans stay booleans (conditions never recorded are False).
* ``years_since_quit``: as in the EHR row (0 for current smokers), missing for never-smokers.
* labs: ``lab_<test>`` = the latest value of the panel test (canonical units of risk/extract/labs.py).

``to_domain_contributions`` converts fusion_models' Contribution type (fusion_models does not import risk) to
``risk.domain.Contribution``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from fusion_models.explain import Contribution as FusionContribution
from fusion_models.features import LAB_FEATURES, NODULE_SCHEMA, PATIENT_SCHEMA
from risk.domain import Contribution, PatientSnapshot
from risk.features.imaging import nodule_rows, patient_imaging_features, tracks_from_snapshot
from risk.features.online import features_from_snapshot

FeatureRow = dict[str, float | str | None]

_SEXES = {"female", "male"}
_STATUSES = {"current", "former", "never"}
_BOOLEANS = ("copd", "emphysema", "personal_history_cancer", "family_history_lung_cancer")
_NUMBERS = ("bmi", "cigarettes_per_day", "smoking_duration_years", "pack_years")
EHR_PATIENT_FEATURES = PATIENT_SCHEMA.features_of(PATIENT_SCHEMA["age_years"].modality)
EHR_NODULE_FEATURES = NODULE_SCHEMA.features_of(NODULE_SCHEMA["age_years"].modality)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def ehr_to_fusion(ehr: Mapping[str, Any]) -> dict[str, Any]:
    """The EHR features of the patient schema from one EHR feature row (risk/features/schema.py columns)."""
    status = ehr.get("smoking_status")
    status = status if status in _STATUSES else None
    out: dict[str, Any] = {
        "age_years": _float(ehr.get("age_years")),
        "sex": ehr.get("sex") if ehr.get("sex") in _SEXES else None,
        "race_ethnicity": ehr.get("race_ethnicity"),
        "education_level": _float(ehr.get("education_level")),
        "smoking_status": status,
        "years_since_quit": None if status == "never" else _float(ehr.get("years_since_quit")),
    }
    for name in _BOOLEANS:
        v = ehr.get(name)
        out[name] = None if v is None else bool(v)
    for name in _NUMBERS:
        out[name] = _float(ehr.get(name))
    for lab in LAB_FEATURES:
        out[lab] = _float(ehr.get(lab.removeprefix("lab_")))
    return out


def patient_row(ehr: Mapping[str, Any], tracks: Any) -> FeatureRow:
    """The patient-task row from an EHR row and the patient's reported-nodule tracks."""
    ehr_part = ehr_to_fusion(ehr)
    row: FeatureRow = {name: ehr_part[name] for name in EHR_PATIENT_FEATURES}
    count = ehr.get("ct_study_count")
    last_ct: date | None = ehr.get("last_ct_date")
    row.update(patient_imaging_features(tracks, ct_study_count=None if count is None else int(count),
                                        last_ct_date=last_ct))
    return row


def nodule_feature_rows(ehr: Mapping[str, Any], tracks: Any) -> list[tuple[str, FeatureRow]]:
    """(track key, nodule-task row) for each of the patient's tracks."""
    ehr_part = ehr_to_fusion(ehr)
    base = {name: ehr_part[name] for name in EHR_NODULE_FEATURES}
    return [(key, {**base, **imaging}) for key, imaging in nodule_rows(tracks)]


def snapshot_to_fusion_features(snapshot: PatientSnapshot) -> dict[str, float | str | None]:
    """The patient-task feature row of ``snapshot`` (the agreed interface risk/assess calls)."""
    return patient_row(features_from_snapshot(snapshot), tracks_from_snapshot(snapshot))


def snapshot_to_nodule_features(snapshot: PatientSnapshot) -> list[tuple[str, dict[str, float | str | None]]]:
    """(track key, nodule-task feature row) per nodule track of ``snapshot`` (key = Tracking UID or track id)."""
    return nodule_feature_rows(features_from_snapshot(snapshot), tracks_from_snapshot(snapshot))


def to_domain_contributions(contributions: Iterable[FusionContribution]) -> tuple[Contribution, ...]:
    """fusion_models' explanation factors as risk.domain.Contribution (log-odds, clinician wording)."""
    return tuple(Contribution(feature=c.feature, contribution=float(c.contribution), description=c.description)
                 for c in contributions)
