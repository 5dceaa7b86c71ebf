"""The ACR LCSR-style registry export: one row per screening/follow-up exam in the range, with per-row validation
that names the missing required fields."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from risk.config import load_settings
from risk.errors import InvalidInput
from risk.population.nodules import TableObservations
from risk.population.registry import COLUMNS, RegistryRange, csv_text, missing_required, registry_rows
from risk.population.runs import RunOptions, run_population
from risk.store.db import Database


def test_rows_for_the_range_with_validation(sqlite_db: Database, cohort: Path, cohort_as_of: date) -> None:
    settings = load_settings(store={"url": sqlite_db.url})
    run_population(settings, sqlite_db, RunOptions(as_of=cohort_as_of, folder=cohort / "fhir" / "ndjson"),
                   observations=TableObservations.from_cohort(cohort))
    period = RegistryRange(date(2025, 7, 1), cohort_as_of)
    with sqlite_db.session() as s:
        out = list(registry_rows(s, period, ["site-a"]))
        assert list(registry_rows(s, period, ["site-b"])) == []
    truth = pl.read_parquet(cohort / "truth" / "studies.parquet").filter(
        pl.col("study_date").is_between(period.start, period.end))
    assert {r["study_instance_uid"] for r in out} == set(truth["study_instance_uid"])
    kinds = dict(truth.select("study_instance_uid", "kind").iter_rows())
    for r in out:
        want = {"baseline": "baseline", "annual": "annual"}.get(kinds[r["study_instance_uid"]], "follow-up")
        assert r["exam_kind"] == want
        assert r["valid"] == (r["missing_required_fields"] == "")
        assert r["lung_rads_category"] in {"1", "2", "3", "4A", "4B", "4X", None}
    # the synthetic EHR has no shared decision-making record: every baseline row says so, by name
    baselines = [r for r in out if r["exam_kind"] == "baseline"]
    assert baselines and all("shared_decision_making_documented" in r["missing_required_fields"] for r in baselines)
    # agreement with the generator's own Lung-RADS-like category on the exams with an SR
    truth_cat = dict(truth.select("study_instance_uid", "lung_rads_like_category").iter_rows())
    graded = [r for r in out if r["lung_rads_category"] is not None]
    agree = sum(1 for r in graded if r["lung_rads_category"] == truth_cat[r["study_instance_uid"]])
    assert len(graded) > 0.9 * len(out) and agree / len(graded) > 0.8
    text = "".join(csv_text(iter(out)))
    table = list(csv.reader(io.StringIO(text)))
    assert tuple(table[0]) == COLUMNS and len(table) == len(out) + 1


def test_missing_required_fields_are_named() -> None:
    row = {"facility": "site-a", "patient_id": "p", "date_of_birth": date(1960, 1, 1), "sex": "male",
           "exam_date": date(2026, 1, 1), "exam_kind": "baseline", "smoking_status": "former", "pack_years": None,
           "years_since_quit": None, "lung_rads_category": None, "shared_decision_making_documented": False}
    assert missing_required(row) == ["lung_rads_category", "pack_years", "years_since_quit",
                                     "shared_decision_making_documented"]
    ok = {**row, "pack_years": 30.0, "years_since_quit": 3.0, "lung_rads_category": "2",
          "shared_decision_making_documented": True}
    assert missing_required(ok) == []
    assert missing_required({**ok, "smoking_status": "current", "years_since_quit": None, "exam_kind": "annual",
                             "shared_decision_making_documented": False}) == []
    with pytest.raises(InvalidInput, match="to"):
        RegistryRange(date(2026, 2, 1), date(2026, 1, 1))
