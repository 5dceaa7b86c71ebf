"""The run record (inputs digest, model versions, counts, duration, failure), the per-patient nodule cache, the
per-patient path against risk.assess, and the population tables' migration."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from risk.assess import assess
from risk.config import load_settings
from risk.errors import InvalidInput
from risk.extract.notes import NoteSink
from risk.extract.snapshot import assemble_snapshot, extract_fhir, group_resources
from risk.imaging.tracking import track_nodules
from risk.population.nodules import TableObservations, _Imaging
from risk.population.runs import RunOptions, inputs_digest, run_population
from risk.population.scoring import ScoringOptions, score_population
from risk.sources.bulk import BulkExport
from risk.store.base import Base
from risk.store.db import Database
from risk.store.population import PopulationRun
from tests.population.conftest import resources_by_patient

POPULATION_TABLES = {"population_run", "population_patient", "population_nodule", "population_exam",
                     "population_nodule_cache", "worklist_item", "worklist_event", "coordinator_session"}


def test_run_record(sqlite_db: Database, cohort: Path, cohort_as_of: date, tmp_path: Path) -> None:
    folder = tmp_path / "ndjson"
    shutil.copytree(cohort / "fhir" / "ndjson", folder)
    settings = load_settings(store={"url": sqlite_db.url})
    obs = TableObservations.from_cohort(cohort)
    first = run_population(settings, sqlite_db, RunOptions(as_of=cohort_as_of, folder=folder, triggered_by="t"),
                           observations=obs)
    second = run_population(settings, sqlite_db, RunOptions(as_of=cohort_as_of, folder=folder), observations=obs)
    assert first.inputs_digest == second.inputs_digest and len(first.inputs_digest or "") == 64
    assert first.counts["nodules_reassessed"] > 50 and second.counts["nodules_reassessed"] == 0, \
        "unchanged patients come from the nodule cache"
    assert first.counts["worklist_new"] > 0 and second.counts["worklist_new"] == 0
    # one patient's record changes: only that patient is re-assessed, and the digest changes
    lines = (folder / "Observation.ndjson").read_bytes().splitlines()
    pid = pl.read_parquet(cohort / "truth" / "nodules.parquet")["patient_id"][0]
    extra = {"resourceType": "Observation", "id": "new-bmi", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]},
             "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-01-02",
             "valueQuantity": {"value": 31.0, "unit": "kg/m2", "system": "http://unitsofmeasure.org",
                               "code": "kg/m2"}}
    (folder / "Observation.ndjson").write_bytes(b"\n".join([*lines, orjson.dumps(extra)]) + b"\n")
    third = run_population(settings, sqlite_db, RunOptions(as_of=cohort_as_of, folder=folder), observations=obs)
    assert third.inputs_digest != first.inputs_digest and third.counts["nodules_reassessed"] == 1
    with sqlite_db.session() as s:
        runs = list(s.scalars(select(PopulationRun).order_by(PopulationRun.started_at)))
    assert [r.status for r in runs] == ["complete"] * 3
    r = runs[0]
    assert r.triggered_by == "t" and r.as_of == cohort_as_of and r.inputs_digest == first.inputs_digest
    assert r.model_versions and r.model_versions["plcom2012"] == "tammemagi-nejm-2013"
    assert r.model_versions["eligibility"].startswith("uspstf-2021")
    assert r.counts and r.counts["patients"] == 400 and r.counts["sites"]["site-a"]["uptake"]["eligible"] > 0
    assert r.duration_s and r.duration_s > 0 and r.timings and "score_features" in r.timings
    assert {f["file"] for f in r.inputs["files"]} >= {"Patient.ndjson", "Observation.ndjson"}  # type: ignore[index]


def test_digest_modes(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(b"x" * (3 << 20))
    head, _ = inputs_digest(tmp_path)
    full, described = inputs_digest(tmp_path, full=True)
    assert described["digest_mode"] == "full" and head != full
    data = bytearray((tmp_path / "a.ndjson").read_bytes())
    data[(3 << 20) // 2] = ord("y")
    (tmp_path / "a.ndjson").write_bytes(bytes(data))
    assert inputs_digest(tmp_path)[0] == head, "head/tail fingerprint: a change in the middle is not seen"
    assert inputs_digest(tmp_path, full=True)[0] != full


def test_a_failed_run_is_recorded(sqlite_db: Database, tmp_path: Path) -> None:
    settings = load_settings(store={"url": sqlite_db.url})
    with pytest.raises(InvalidInput, match="--ndjson"):
        run_population(settings, sqlite_db, RunOptions(as_of=date(2026, 6, 30), folder=tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"p1","birthDate":"1960"}\n')

    class Boom:
        def observations(self, uids: object) -> dict[str, list[object]]:
            raise RuntimeError("cache exploded")

    (tmp_path / "bad" / "ImagingStudy.ndjson").write_bytes(
        b'{"resourceType":"ImagingStudy","id":"s","status":"available","subject":{"reference":"Patient/p1"},'
        b'"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"series":[{"modality":{"code":"CT"}}]}\n')
    with pytest.raises(RuntimeError, match="exploded"):
        run_population(settings, sqlite_db, RunOptions(as_of=date(2026, 6, 30), folder=tmp_path / "bad"),
                       observations=Boom())  # type: ignore[arg-type]
    with sqlite_db.session() as s:
        runs = list(s.scalars(select(PopulationRun)))
    assert [r.status for r in runs] == ["failed"] and "cache exploded" in (runs[0].error or "")


@pytest.mark.integration
def test_patient_and_exam_rows_commit_with_the_run_on_postgresql(pg_db: Database, cohort: Path, cohort_as_of: date,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The patient and exam rows are copied on connections of their own (risk.population.store_io.ConcurrentReplace):
    they are stored with a complete run (whose uptake figures, counted on the patients' connection, equal the
    dashboard's) and left as they were by a run whose own transaction fails."""
    from sqlalchemy import func

    from risk.population import dashboard, runs
    from risk.store.population import PopulationExam, PopulationPatient

    settings = load_settings(store={"url": pg_db.url})
    options = RunOptions(as_of=cohort_as_of, folder=cohort / "fhir" / "ndjson")
    summary = run_population(settings, pg_db, options)
    with pg_db.session() as s:
        stored = s.scalar(select(func.count()).select_from(PopulationExam))
        patients = s.scalar(select(func.count()).select_from(PopulationPatient))
        sites = dashboard.all_sites(s)
        figures = {site: dashboard.uptake(s, [site], today=cohort_as_of) for site in sites}
        s.execute(PopulationExam.__table__.update().values(exam_kind="marked"))
        s.execute(PopulationPatient.__table__.update().values(phone="marked"))
    assert stored and stored > 100 and patients == summary.counts["patients"]
    assert sites and {site: summary.counts["sites"][site]["uptake"] for site in sites} == figures
    assert sum(f["eligible"] for f in figures.values()) > 0

    def fail(*_args: object, **_kw: object) -> None:
        raise RuntimeError("worklist step failed")

    monkeypatch.setattr(runs, "_store_worklist", fail)
    with pytest.raises(RuntimeError, match="worklist step failed"):
        run_population(settings, pg_db, options)
    with pg_db.session() as s:
        kinds = set(s.scalars(select(PopulationExam.exam_kind).distinct()))
        phones = set(s.scalars(select(PopulationPatient.phone).distinct()))
        statuses = [r.status for r in s.scalars(select(PopulationRun).order_by(PopulationRun.started_at))]
    assert kinds == {"marked"} and phones == {"marked"} and statuses == ["complete", "failed"]


def test_one_bad_line_does_not_sink_the_run(sqlite_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(
        b'{"resourceType":"Patient","id":"p1","birthDate":"1960-01-01","gender":"male"}\n{not json\n'
        b'{"resourceType":"Patient","id":"p2","birthDate":"1961-01-01","gender":"female"}\n')
    settings = load_settings(store={"url": sqlite_db.url})
    summary = run_population(settings, sqlite_db, RunOptions(as_of=date(2026, 6, 30), folder=folder))
    assert summary.counts["patients"] == 2
    with sqlite_db.session() as s:
        run = s.scalar(select(PopulationRun))
    assert run is not None and any("not valid JSON" in n for n in run.inputs["notes"])


def test_the_per_patient_path_is_risk_assess(cohort: Path, cohort_as_of: date) -> None:
    """Nodule categories and follow-ups from a population run equal risk.assess on the same resources and SR
    observations, patient by patient (every patient with nodules)."""
    source = TableObservations.from_cohort(cohort)
    scores = score_population(BulkExport(cohort / "fhir" / "ndjson"),
                              ScoringOptions(as_of=cohort_as_of, observations=source))
    by_patient = resources_by_patient(cohort / "fhir" / "ndjson")
    studies = pl.read_parquet(cohort / "truth" / "studies.parquet")
    checked = 0
    for pid, (_digest, result) in scores.nodule_results.items():
        uids = studies.filter(pl.col("patient_id") == pid)
        dates = dict(uids.select("study_instance_uid", "study_date").iter_rows())
        obs = source.observations(pl.Series(list(dates), dtype=pl.String))
        tracking = track_nodules([o for v in obs.values() for o in v], evaluated_studies=list(dates.items()))
        notes = NoteSink()
        records = group_resources(by_patient[pid], pid, notes)
        snap = assemble_snapshot(pid, cohort_as_of, extract_fhir(records, cohort_as_of),
                                 imaging=_Imaging((), tracking.tracks, tracking.notes, _status()), notes=notes.notes)
        a = assess(snap)
        want = sorted((c.track_id, c.guideline, c.category, c.due_date.isoformat() if c.due_date else None)
                      for c in a.nodule_categories)
        got = sorted((c["track_id"], c["guideline"], c["category"], c["due_date"]) for c in result.categories)
        assert got == want, pid
        recs = sorted((r.kind.value, r.track_id, r.due_date.isoformat() if r.due_date else None)
                      for r in a.recommendations if r.track_id)
        assert sorted((r["kind"], r["track_id"], r["due_date"]) for r in result.recommendations) == recs, pid
        checked += 1
    assert checked > 100


def _status():  # type: ignore[no-untyped-def]
    from risk.domain.snapshot import SourceState, SourceStatus

    return SourceStatus("pacs", SourceState.OK, "imaging-feature cache")


def test_migration_matches_the_models(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diff if any(t in repr(d) for t in POPULATION_TABLES)]
    assert ours == []
    assert sqlite_db.table_names() >= POPULATION_TABLES
    sqlite_db.downgrade("0004_smart_session")
    assert not POPULATION_TABLES & sqlite_db.table_names()
    sqlite_db.upgrade()
    assert sqlite_db.table_names() >= POPULATION_TABLES


def test_old_exports_are_pruned(tmp_path: Path) -> None:
    import os
    import uuid

    from risk.population.runs import _prune_exports

    made = []
    for i in range(4):
        d = tmp_path / str(uuid.uuid4())
        d.mkdir()
        os.utime(d, (1000 + i, 1000 + i))
        made.append(d)
    (tmp_path / "not-a-run").mkdir()
    _prune_exports(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([made[2].name, made[3].name, "not-a-run"])
