"""risk.population.rules against the one-patient functions of risk.assess (the reference), on every patient of two
cohorts (the realistic ``risk synth`` one and the features' corner-case one) and on random inputs."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.assess import assess
from risk.assess.eligibility import eligibility_decisions
from risk.assess.policy import due_window
from risk.assess.risks import plcom2012_estimate
from risk.domain import RecommendationKind, RiskEstimate, ScreeningProgram
from risk.extract.snapshot import snapshot_from_resources
from risk.population import rules
from risk.population.explain import snapshot_from_row
from risk.population.scoring import ScoringOptions, score_population
from risk.sources.bulk import BulkExport
from tests.features.cohort import AS_OF as CORNER_AS_OF
from tests.features.cohort import write_cohort
from tests.population.conftest import resources_by_patient

COLUMN = rules.PROGRAM_COLUMNS


def _compare(ndjson: Path, as_of: date) -> tuple[int, list[str]]:
    scores = score_population(BulkExport(ndjson), ScoringOptions(as_of=as_of))
    table = {r["patient_id"]: r for r in scores.patients.iter_rows(named=True)}
    problems: list[str] = []
    compared = 0
    for pid, resources in resources_by_patient(ndjson).items():
        if pid not in table:
            continue
        row = table[pid]
        snapshot = snapshot_from_resources(resources, patient_id=pid, as_of=as_of)
        compared += 1
        for d in eligibility_decisions(snapshot):
            if d.eligible != row[COLUMN[d.program]]:
                problems.append(f"{pid} {d.program}: assess {d.eligible} ({d.reason}), "
                                f"population {row[COLUMN[d.program]]}")
        est = plcom2012_estimate(snapshot)
        p = est.probability if isinstance(est, RiskEstimate) else None
        got = row["plco_probability"]
        if (p is None) != (got is None) or (p is not None and abs(p - got) > 1e-12):
            problems.append(f"{pid} PLCOm2012: assess {p} {getattr(est, 'reason', '')}, population {got}")
        if isinstance(est, RiskEstimate) and est.model != row["plco_model"]:
            problems.append(f"{pid} PLCO model {est.model} vs {row['plco_model']}")
        a = assess(snapshot)
        if a.last_ct_date != row["last_chest_ct"]:
            problems.append(f"{pid} last chest CT {a.last_ct_date} vs {row['last_chest_ct']}")
        screen = [r for r in a.recommendations if r.kind is RecommendationKind.SCREENING_LDCT]
        got = (row["annual_window_start"], row["annual_due_date"], row["annual_overdue_after"])
        want = (screen[0].window_start, screen[0].due_date, screen[0].overdue_after) if screen else (None, None, None)
        if got != want:
            problems.append(f"{pid} annual window {want} vs {got}")
    return compared, problems


def test_every_synthetic_patient_matches_risk_assess(cohort: Path, cohort_as_of: date) -> None:
    compared, problems = _compare(cohort / "fhir" / "ndjson", cohort_as_of)
    assert compared == 400
    assert problems == []


def test_every_corner_case_patient_matches_risk_assess(tmp_path: Path) -> None:
    write_cohort(tmp_path, 300, seed=11)
    compared, problems = _compare(tmp_path / "ndjson", CORNER_AS_OF)
    assert compared >= 290
    assert problems == []


def test_the_cohort_is_not_trivial(cohort: Path, cohort_as_of: date) -> None:
    """The equality above means something: every branch of the rules is taken in the cohort."""
    p = score_population(BulkExport(cohort / "fhir" / "ndjson"), ScoringOptions(as_of=cohort_as_of)).patients
    for col in COLUMN.values():
        assert set(p[col].to_list()) >= {True, False}
    assert p["plco_probability"].is_null().sum() > 0 and p["plco_probability"].is_not_null().sum() > 100
    assert set(p["plco_model"].drop_nulls().to_list()) == {"plcom2012"}
    assert p["annual_due_date"].is_not_null().sum() > 100


def test_annual_offsets_are_measured_from_due_window() -> None:
    w = rules.AnnualWindow.from_policy()
    day = date(2024, 2, 29)
    ref = due_window(day, months=12)
    assert ref.due_date == date(2025, 2, 28)
    assert ref.due_date - ref.window_start == timedelta(days=w.early_days)
    assert ref.overdue_after - ref.due_date == timedelta(days=w.grace_days)
    frame = pl.DataFrame({"eligible_any": [True], "has_imaging_plan": [False], "last_chest_ct": [day]})
    out = frame.select(rules.annual_columns(date(2025, 1, 1))).row(0)
    assert out == (ref.window_start, ref.due_date, ref.overdue_after)


def test_plco_bounds_come_from_the_input_model() -> None:
    b = rules.PLCO_BOUNDS
    assert (b["age"].low, b["age"].high) == (18.0, 100.0)
    assert (b["cigarettes_per_day"].low, b["cigarettes_per_day"].low_inclusive) == (0.1, True)
    assert (b["bmi"].low, b["bmi"].high) == (10.0, 100.0)


# --- random inputs: the vectorised columns vs the one-patient functions on the same values ---------------------------
AS_OF = date(2026, 6, 30)
_status = st.sampled_from([None, "current", "former", "never", "unknown"])
_maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def patient_rows(draw: Any) -> dict[str, Any]:
    age = draw(st.integers(min_value=30, max_value=95))
    status = draw(_status)
    ysq_days = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=40 * 366),
                              st.sampled_from([round(15 * 365.25), round(15 * 365.25) - 1, round(15 * 365.25) + 1])))
    py = draw(_maybe(st.one_of(st.floats(min_value=0, max_value=120, allow_nan=False), st.sampled_from([20.0, 19.99]))))
    row: dict[str, Any] = {
        "patient_id": "p1", "birth_date": date(AS_OF.year - age, 1, 1) if draw(st.booleans()) else
        date(AS_OF.year - age, 12, 31) - timedelta(days=draw(st.integers(0, 30))),
        "sex": draw(st.sampled_from(["female", "male", "unknown"])),
        "race_ethnicity": draw(st.sampled_from([None, "white", "black", "hispanic", "asian",
                                                "american_indian_alaska_native", "native_hawaiian_pacific_islander"])),
        "education_level": draw(_maybe(st.integers(1, 6))), "bmi": draw(_maybe(st.floats(12, 60, allow_nan=False))),
        "copd": draw(st.booleans()), "emphysema": draw(st.booleans()), "personal_history_cancer": draw(st.booleans()),
        "family_history_lung_cancer": draw(st.booleans()), "immunocompromised": False,
        "lung_cancer": draw(st.booleans()) and draw(st.booleans()), "smoking_status": status,
        "cigarettes_per_day": None if status in (None, "never") else draw(_maybe(st.floats(0.5, 80,
                                                                                           allow_nan=False))),
        "smoking_duration_years": None if status in (None, "never") else draw(_maybe(st.floats(0, 60,
                                                                                               allow_nan=False))),
        "pack_years": None if status is None else 0.0 if status == "never" else py,
        "quit_date": AS_OF - timedelta(days=ysq_days) if status == "former" and ysq_days is not None else None,
    }
    return row


def _vectorised(row: dict[str, Any]) -> dict[str, Any]:
    snap = snapshot_from_row(row, AS_OF)
    feature = {
        "age_years": snap.age_years, "lung_cancer": row["lung_cancer"], "smoking_status": row["smoking_status"],
        "pack_years": row["pack_years"], "cigarettes_per_day": row["cigarettes_per_day"],
        "smoking_duration_years": row["smoking_duration_years"],
        "years_since_quit": (snap.smoking.years_since_quit(AS_OF) if snap.smoking is not None else None),
        "race_ethnicity": row["race_ethnicity"] if snap.demographics is not None else None,
        "education_level": row["education_level"], "bmi": row["bmi"], "copd": row["copd"],
        "emphysema": row["emphysema"], "personal_history_cancer": row["personal_history_cancer"],
        "family_history_lung_cancer": row["family_history_lung_cancer"],
    }
    frame = pl.DataFrame([feature], schema={"age_years": pl.Int64, "lung_cancer": pl.Boolean,
                                            "smoking_status": pl.String, "pack_years": pl.Float64,
                                            "cigarettes_per_day": pl.Float64, "smoking_duration_years": pl.Float64,
                                            "years_since_quit": pl.Float64, "race_ethnicity": pl.String,
                                            "education_level": pl.Int64, "bmi": pl.Float64, "copd": pl.Boolean,
                                            "emphysema": pl.Boolean, "personal_history_cancer": pl.Boolean,
                                            "family_history_lung_cancer": pl.Boolean})
    out = (frame.with_columns(rules.eligibility_columns()).with_columns(rules.plco_columns())
           .with_columns(rules.plco_finish()))
    return out.row(0, named=True)


@settings(max_examples=250, deadline=None)
@given(patient_rows())
def test_random_rows_match_the_one_patient_functions(row: dict[str, Any]) -> None:
    got = _vectorised(row)
    snap = snapshot_from_row(row, AS_OF)
    for d in eligibility_decisions(snap):
        assert got[COLUMN[d.program]] == d.eligible, (d.program, d.reason)
    est = plcom2012_estimate(snap)
    if isinstance(est, RiskEstimate):
        assert got["plco_probability"] == pytest.approx(est.probability, rel=1e-12, abs=1e-15)
        assert got["plco_model"] == est.model
    else:
        assert got["plco_probability"] is None, est.reason


def test_boundaries_by_program() -> None:
    """Named cases at the rule edges (ages, 20 pack-years, exactly 15 years since quitting)."""
    base = {"patient_id": "p", "sex": "male", "race_ethnicity": "white", "education_level": 4, "bmi": 27.0,
            "copd": False, "emphysema": False, "personal_history_cancer": False, "family_history_lung_cancer": False,
            "immunocompromised": False, "lung_cancer": False, "cigarettes_per_day": 20.0,
            "smoking_duration_years": 30.0}
    cases = [
        (dict(birth_date=date(1946, 6, 30), smoking_status="current", pack_years=30.0, quit_date=None),
         (True, False, True)),  # 80: USPSTF/ACS yes, CMS (≤ 77) no
        (dict(birth_date=date(1976, 6, 30), smoking_status="current", pack_years=20.0, quit_date=None),
         (True, True, True)),  # exactly 50 and 20 pack-years
        (dict(birth_date=date(1956, 6, 30), smoking_status="former", pack_years=40.0,
              quit_date=AS_OF - timedelta(days=round(15 * 365.25))), (False, False, True)),  # exactly 15 y
        (dict(birth_date=date(1956, 6, 30), smoking_status="former", pack_years=None,
              quit_date=AS_OF - timedelta(days=400)), (None, None, None)),  # missing pack-years
    ]
    for extra, want in cases:
        got = _vectorised({**base, **extra})
        assert (got["eligible_uspstf_2021"], got["eligible_cms_2022"], got["eligible_acs_2023"]) == want, extra
        snap = snapshot_from_row({**base, **extra}, AS_OF)
        ref = {d.program: d.eligible for d in eligibility_decisions(snap)}
        assert tuple(ref[p] for p in (ScreeningProgram.USPSTF_2021, ScreeningProgram.CMS_2022,
                                      ScreeningProgram.ACS_2023)) == want
