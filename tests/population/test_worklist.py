"""Worklist queues over a scored cohort: the documented priority order, filters, paging, CSV, and site scoping;
on SQLite and PostgreSQL. The cohort's expected queues are derived from its ground truth tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from risk.config import load_settings
from risk.errors import InvalidInput
from risk.population.nodules import TableObservations
from risk.population.runs import RunOptions, run_population
from risk.population.worklist import COLUMNS, UNKNOWN_RISK, Queue, WorklistFilter, csv_lines, page, queue_counts, rows
from risk.store.db import Database

SITES = ("site-a",)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cohort: Path,
           cohort_as_of: date) -> Iterator[Database]:
    """The cohort scored once per module and dialect (the tests here only read)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path_factory.mktemp('wl') / 'w.db'}")
        db.upgrade()
    else:
        from sqlalchemy import text

        db = Database(request.getfixturevalue("pg_url"))
        with db.engine.begin() as conn:
            conn.execute(text("TRUNCATE population_run, population_patient, population_nodule, population_exam, "
                              "population_nodule_cache, worklist_item, worklist_event RESTART IDENTITY"))
    settings = load_settings(store={"url": db.url})
    run_population(settings, db, RunOptions(as_of=cohort_as_of, folder=cohort / "fhir" / "ndjson"),
                   observations=TableObservations.from_cohort(cohort))
    yield db
    db.dispose()


def test_priority_is_risk_times_days_overdue_and_pages_are_stable(scored: Database, cohort_as_of: date) -> None:
    today = cohort_as_of + timedelta(days=60)
    with scored.session() as s:
        everything = list(rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES), today=today))
        assert len(everything) > 20
        for r in everything:
            days = (today - r["due_date"]).days
            assert r["days_overdue"] == max(days, 0)
            assert r["priority"] == pytest.approx((r["risk"] if r["risk"] is not None else UNKNOWN_RISK)
                                                  * max(days, 0))
        keys = [(-r["priority"], r["due_date"]) for r in everything]
        assert keys == sorted(keys)
        first = page(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES), today=today, page_number=1, page_size=7)
        second = page(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES), today=today, page_number=2, page_size=7)
        assert first.total == len(everything) and first.pages == -(-len(everything) // 7)
        assert [r["item_id"] for r in first.rows + second.rows] == [r["item_id"] for r in everything[:14]]


def test_queues_match_the_cohorts_ground_truth(scored: Database, cohort: Path, cohort_as_of: date) -> None:
    """Annual-due: the eligible patients whose last CT is 11+ months old and who have no nodule plan; nodule
    follow-up: the patients whose Lung-RADS 3/4 nodule is due; every queue item belongs to a cohort patient."""
    truth = pl.read_parquet(cohort / "truth" / "patients.parquet")
    studies = pl.read_parquet(cohort / "truth" / "studies.parquet")
    last = studies.group_by("patient_id").agg(last=pl.col("study_date").max())
    with scored.session() as s:
        annual = {r["patient_id"]: r for r in rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES),
                                                   today=cohort_as_of)}
        nodule = {r["patient_id"] for r in rows(s, Queue.NODULE_FOLLOW_UP, WorklistFilter(sites=SITES),
                                                today=cohort_as_of)}
        never = list(rows(s, Queue.ELIGIBLE_NEVER_SCREENED, WorklistFilter(sites=SITES), today=cohort_as_of))
        counts = queue_counts(s, SITES, today=cohort_as_of)
    assert never == [], "every patient of the synthetic screening cohort had a baseline LDCT"
    overdue_truth = set(last.filter(pl.col("last") <= cohort_as_of - timedelta(days=335))["patient_id"])
    assert set(annual) <= overdue_truth | nodule
    assert len(annual) >= 0.5 * len(overdue_truth & set(truth.filter(pl.col("smoking_status_latest") != "never")
                                                          ["patient_id"]) - nodule) > 0
    ordered = pl.read_parquet(cohort / "truth" / "orders.parquet")
    assert counts["nodule_follow_up"] >= 1
    assert set(ordered["patient_id"]) & nodule, "patients with an open follow-up order in the truth are in the queue"


def test_filters(scored: Database, cohort_as_of: date) -> None:
    with scored.session() as s:
        base = list(rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES), today=cohort_as_of))
        due = sorted(r["due_date"] for r in base)
        lo, hi = due[len(due) // 4], due[3 * len(due) // 4]
        window = list(rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES, due_from=lo, due_to=hi),
                           today=cohort_as_of))
        assert window and all(lo <= r["due_date"] <= hi for r in window) and len(window) < len(base)
        cms = list(rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES, program="cms_2022"), today=cohort_as_of))
        assert cms and all("cms_2022" in (r["programs"] or "") for r in cms)
        cat = list(rows(s, Queue.NODULE_FOLLOW_UP, WorklistFilter(sites=SITES, category="3"), today=cohort_as_of))
        assert all(r["category"] == "3" for r in cat)
        assert list(rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=("site-b",)), today=cohort_as_of)) == []


def test_bad_filters_name_the_field() -> None:
    with pytest.raises(InvalidInput, match="site"):
        WorklistFilter(sites=SITES, site="site-b")
    with pytest.raises(InvalidInput, match="program"):
        WorklistFilter(sites=SITES, program="nccn")
    with pytest.raises(InvalidInput, match="due_to"):
        WorklistFilter(sites=SITES, due_from=date(2026, 2, 1), due_to=date(2026, 1, 1))
    with pytest.raises(InvalidInput, match="sites"):
        WorklistFilter(sites=())


def test_csv_export_has_every_row_in_order(scored: Database, cohort_as_of: date) -> None:
    with scored.session() as s:
        text = "".join(csv_lines(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES), today=cohort_as_of))
        expected = [str(r["item_id"]) for r in rows(s, Queue.ANNUAL_DUE, WorklistFilter(sites=SITES),
                                                    today=cohort_as_of)]
    table = list(csv.reader(io.StringIO(text)))
    assert tuple(table[0]) == COLUMNS
    assert [r[0] for r in table[1:]] == expected
