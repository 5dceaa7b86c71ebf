"""The feature schema: encoding (one row == the same row in a frame), validation naming the feature, the hash."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from fusion_models.features import NODULE_SCHEMA, PATIENT_SCHEMA, schema_for
from fusion_models.schema import FeatureKind, FeatureSchema, FeatureSpec, Modality, Task, TrainingRanges
from tests.fusion_models.standin import nodule_table, patient_table


@pytest.mark.parametrize("schema", [PATIENT_SCHEMA, NODULE_SCHEMA], ids=["patient", "nodule"])
def test_encode_row_equals_encode_frame(schema: FeatureSchema) -> None:
    frame = (patient_table(60, seed=3) if schema.task is Task.PATIENT else nodule_table(20, seed=3))
    matrix = schema.encode_frame(frame)
    assert matrix.shape == (frame.height, len(schema.encoded_columns))
    for i, row in enumerate(frame.select(schema.names).iter_rows(named=True)):
        one = schema.encode_row({k: (bool(v) if schema[k].kind is FeatureKind.BINARY and v is not None and v == v
                                     else v) for k, v in row.items()})
        np.testing.assert_array_equal(one[0], matrix[i])


def test_categorical_one_hot_and_missing_is_nan_in_every_column() -> None:
    x = PATIENT_SCHEMA.encode_row({"age_years": 60, "smoking_status": "former", "sex": None})
    cols = PATIENT_SCHEMA.encoded_columns
    assert x[0, cols.index("smoking_status=former")] == 1.0
    assert x[0, cols.index("smoking_status=current")] == 0.0
    assert np.isnan(x[0, cols.index("sex=female")]) and np.isnan(x[0, cols.index("sex=male")])
    assert np.isnan(x[0, cols.index("bmi")])


@pytest.mark.parametrize(("name", "value", "message"), [
    ("age_years", "sixty", "age_years"),
    ("age_years", 200.0, "plausible range"),
    ("copd", 3, "copd"),
    ("smoking_status", 1, "smoking_status"),
    ("bmi", float("inf"), "bmi"),
])
def test_bad_values_raise_naming_the_feature(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PATIENT_SCHEMA.encode_row({name: value})  # type: ignore[dict-item]


def test_unknown_feature_is_an_error() -> None:
    with pytest.raises(ValueError, match="Unknown feature"):
        PATIENT_SCHEMA.encode_row({"shoe_size": 42.0})


def test_frame_missing_a_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="lacks column"):
        PATIENT_SCHEMA.encode_frame(pl.DataFrame({"age_years": [60.0]}))


def test_hash_is_stable_and_changes_with_meaning_not_wording() -> None:
    assert schema_for("patient").hash == PATIENT_SCHEMA.hash
    assert len({PATIENT_SCHEMA.hash, NODULE_SCHEMA.hash}) == 2
    reworded = dataclasses.replace(PATIENT_SCHEMA.features[0], description="Age in years (reworded)")
    same = FeatureSchema(PATIENT_SCHEMA.name, Task.PATIENT, PATIENT_SCHEMA.label, "x",
                         (reworded, *PATIENT_SCHEMA.features[1:]))
    assert same.hash == PATIENT_SCHEMA.hash
    other_unit = dataclasses.replace(PATIENT_SCHEMA.features[0], unit="mo")
    changed = FeatureSchema(PATIENT_SCHEMA.name, Task.PATIENT, PATIENT_SCHEMA.label, "x",
                            (other_unit, *PATIENT_SCHEMA.features[1:]))
    assert changed.hash != PATIENT_SCHEMA.hash


def test_spec_invariants() -> None:
    with pytest.raises(ValueError, match="levels"):
        FeatureSpec("x", FeatureKind.CATEGORICAL, Modality.EHR, "1", "x")
    with pytest.raises(ValueError, match="required"):
        FeatureSpec("x", FeatureKind.NUMERIC, Modality.EHR, "1", "x", required=True, allowed_missing=True)


def test_training_ranges_round_trip() -> None:
    frame = patient_table(200, seed=1)
    ranges = TrainingRanges.from_frame(PATIENT_SCHEMA, frame)
    again = TrainingRanges.from_json(ranges.to_json())
    assert again == ranges
    assert ranges.ranges["age_years"].low == frame["age_years"].min()
    assert set(ranges.ranges["smoking_status"].levels) == {"current", "former", "never"}


def test_factor_wording() -> None:
    row: dict[str, float | str | None] = {
        "ct_study_count": 2.0, "nodule_count": 1.0,
        "smoking_status": "former", "years_since_quit": 8.0, "index_nodule_volume_change_pct": 38.4,
        "index_nodule_growth_interval_days": 152.0, "index_nodule_doublings_per_year": 1.1, "pack_years": 32.0}
    s = PATIENT_SCHEMA
    assert s["pack_years"].describe(32.0, row) == "32 pack-years"
    assert s["smoking_status"].describe("former", row) == "former smoker"
    assert s["years_since_quit"].describe(8.0, row) == "quit smoking 8 years ago"
    never: dict[str, float | str | None] = {"smoking_status": "never", "pack_years": 0.0}
    assert {s[n].describe(never.get(n), never) for n in ("smoking_status", "pack_years", "cigarettes_per_day",
                                                          "years_since_quit")} == {"never smoked"}
    assert s["index_nodule_doublings_per_year"].describe(1.1, row) == "nodule grew 38% in 5 months"
    assert s["copd"].describe(1.0, row) == "COPD"
    assert s["copd"].describe(0.0, row) == "no COPD"
    no_ct: dict[str, float | str | None] = {"age_years": 60.0}
    assert {s[n].describe(None, no_ct) for n in s.features_of(s["nodule_count"].modality)} == {"no CT on record"}
    clear: dict[str, float | str | None] = {"ct_study_count": 1.0, "nodule_count": 0.0}
    assert s["index_nodule_diameter_mm"].describe(None, clear) == "no nodule on the latest CT"


def test_top_factors_merge_features_that_state_one_fact() -> None:
    import numpy as np

    from fusion_models.explain import top_factors

    s = PATIENT_SCHEMA
    row: dict[str, float | str | None] = {
        "age_years": 70.0, "smoking_status": "current", "pack_years": 45.0, "ct_study_count": 2.0, "nodule_count": 1.0,
        "index_nodule_volume_change_pct": 38.4, "index_nodule_growth_interval_days": 152.0,
        "index_nodule_doublings_per_year": 1.1}
    per = np.zeros(len(s.names))
    per[s.names.index("index_nodule_volume_change_pct")] = 0.2
    per[s.names.index("index_nodule_growth_interval_days")] = 0.1
    per[s.names.index("index_nodule_doublings_per_year")] = 0.5
    per[s.names.index("pack_years")] = 0.6
    per[s.names.index("age_years")] = -0.05
    factors = top_factors(s, row, per)
    assert [f.description for f in factors] == ["nodule grew 38% in 5 months", "45 pack-years", "age 70"]
    assert factors[0].contribution == pytest.approx(0.8) and factors[0].feature == "index_nodule_doublings_per_year"
    assert factors[2].contribution == pytest.approx(-0.05)
