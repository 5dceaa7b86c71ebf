"""PatientSnapshot → the feature row of risk/features/schema.py (the online, one-patient path)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import polars as pl

from risk.domain.clinical import ConditionKind
from risk.domain.snapshot import PatientSnapshot
from risk.features.rules import LAB_CODE_BY_ROLE, LAB_ROLES
from risk.features.schema import FEATURE_SCHEMA


def features_from_snapshot(snapshot: PatientSnapshot) -> dict[str, Any]:
    """One row: a dict with exactly the FEATURE_SCHEMA columns."""
    demo = snapshot.demographics
    smoking = snapshot.smoking
    lung = snapshot.conditions_of(ConditionKind.LUNG_CANCER)
    onsets = [c.onset for c in lung if c.onset is not None]
    row: dict[str, Any] = {
        "patient_id": snapshot.patient_id,
        "age_years": snapshot.age_years,
        "sex": demo.sex.value if demo is not None else None,
        "race_ethnicity": demo.race_ethnicity.value if demo is not None and demo.race_ethnicity else None,
        "education_level": snapshot.education.level if snapshot.education is not None else None,
        "bmi": snapshot.bmi.value if snapshot.bmi is not None else None,
        "copd": snapshot.has_condition(ConditionKind.COPD),
        "emphysema": snapshot.has_condition(ConditionKind.EMPHYSEMA),
        "personal_history_cancer": snapshot.has_condition(ConditionKind.PERSONAL_HISTORY_OF_CANCER),
        "immunocompromised": snapshot.has_condition(ConditionKind.IMMUNOCOMPROMISED),
        "family_history_lung_cancer": snapshot.family_history_lung_cancer,
        "lung_cancer": bool(lung),
        "lung_cancer_onset": min(onsets) if onsets else None,
        "smoking_status": smoking.status.value if smoking is not None else None,
        "cigarettes_per_day": smoking.cigarettes_per_day if smoking is not None else None,
        "smoking_duration_years": smoking.smoking_duration_years if smoking is not None else None,
        "years_since_quit": smoking.years_since_quit(snapshot.as_of) if smoking is not None else None,
        "pack_years": smoking.pack_years if smoking is not None else None,
    }
    latest: dict[str, tuple[date, float]] = {}
    codes = {LAB_CODE_BY_ROLE[role].code: role.value for role in LAB_ROLES}
    for lab in snapshot.labs:  # oldest first within each test: the last one seen is the latest
        name = codes.get(lab.code.code)
        if name is not None:
            latest[name] = (lab.effective, lab.value)
    for role in LAB_ROLES:
        effective, value = latest.get(role.value, (None, None))
        row[role.value] = value
        row[f"{role.value}_date"] = effective
    ct = snapshot.ct_studies
    row["last_ct_date"] = snapshot.last_ct_date
    row["ct_study_count"] = len({s.study_instance_uid for s in ct})
    return row


def feature_frame(snapshots: Iterable[PatientSnapshot]) -> pl.DataFrame:
    """Rows for many snapshots, typed by FEATURE_SCHEMA and sorted by patient id."""
    rows = [features_from_snapshot(s) for s in snapshots]
    return pl.DataFrame(rows, schema=FEATURE_SCHEMA, orient="row").sort("patient_id")
