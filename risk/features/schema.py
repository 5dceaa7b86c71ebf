"""The per-patient EHR feature row: its columns and types, shared by the online and the offline path.

Online, :func:`risk.features.online.features_from_snapshot` builds one row from a PatientSnapshot;
offline, :func:`risk.features.bulk.build_feature_table` builds the same rows with polars from Bulk
NDJSON. Both follow risk/features/rules.py and must agree exactly (tests/features/test_bulk.py).

Columns (null = not recorded on or before the as-of date):

- ``patient_id``; ``age_years`` (completed years), ``sex`` (FHIR administrative gender),
  ``race_ethnicity`` (PLCOm2012 group, risk.domain.RaceEthnicity values), ``education_level`` (1-6),
  ``bmi`` (kg/m2, recorded or computed from weight and height);
- conditions ever diagnosed (False when none recorded): ``copd``, ``emphysema``,
  ``personal_history_cancer`` (a malignancy other than lung cancer), ``immunocompromised``,
  ``family_history_lung_cancer`` (first-degree relative); the outcome ``lung_cancer`` and its earliest
  ``lung_cancer_onset``;
- smoking: ``smoking_status`` (current / former / never / unknown), ``cigarettes_per_day``,
  ``smoking_duration_years``, ``years_since_quit`` (0 for current smokers), ``pack_years``;
- the laboratory panel: ``<test>`` (canonical unit, see risk/extract/labs.py) and ``<test>_date`` for
  the latest result of each test;
- imaging: ``last_ct_date`` and ``ct_study_count`` (FHIR ImagingStudy; online also PACS studies).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from risk.features.rules import LAB_ROLES

CONDITION_COLUMNS: Final = ("copd", "emphysema", "personal_history_cancer", "immunocompromised",
                            "family_history_lung_cancer", "lung_cancer")
LAB_COLUMNS: Final = tuple(r.value for r in LAB_ROLES)

FEATURE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "patient_id": pl.String(),
    "age_years": pl.Int64(),
    "sex": pl.String(),
    "race_ethnicity": pl.String(),
    "education_level": pl.Int64(),
    "bmi": pl.Float64(),
    **{name: pl.Boolean() for name in CONDITION_COLUMNS},
    "lung_cancer_onset": pl.Date(),
    "smoking_status": pl.String(),
    "cigarettes_per_day": pl.Float64(),
    "smoking_duration_years": pl.Float64(),
    "years_since_quit": pl.Float64(),
    "pack_years": pl.Float64(),
    **{col: dtype for lab in LAB_COLUMNS for col, dtype in ((lab, pl.Float64()), (f"{lab}_date", pl.Date()))},
    "last_ct_date": pl.Date(),
    "ct_study_count": pl.Int64(),
}
FEATURE_COLUMNS: Final = tuple(FEATURE_SCHEMA)
