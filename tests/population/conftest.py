"""Fixtures for risk.population: synthetic cohorts (``risk synth --ndjson-only``), stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from risk.store.db import Database

ROOT = Path(__file__).resolve().parents[2]


def synth(out: Path, patients: int, seed: int, *extra: str) -> Path:
    """A ``risk synth`` cohort (the CLI: its layout is the public interface)."""
    run = subprocess.run([sys.executable, "-m", "risk", "synth", "--out", str(out), "--patients", str(patients),
                          "--seed", str(seed), "--workers", "1", "--quiet", *extra], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 synthetic patients, NDJSON and truth only (no DICOM)."""
    return synth(tmp_path_factory.mktemp("pop") / "c400", 400, 5, "--ndjson-only")


@pytest.fixture(scope="session")
def cohort_as_of(cohort: Path) -> date:
    return date.fromisoformat(orjson.loads((cohort / "manifest.json").read_bytes())["as_of"])


def resources_by_patient(ndjson: Path) -> dict[str, list[dict[str, Any]]]:
    """Every resource of an NDJSON folder grouped by the patient it belongs to (Endpoints go to everyone)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    shared: list[dict[str, Any]] = []
    for path in sorted(ndjson.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            r = orjson.loads(line)
            if r.get("resourceType") == "Patient":
                out[r["id"]].append(r)
                continue
            ref = ((r.get("subject") or r.get("patient") or {}).get("reference") or "")
            if "Patient/" in ref:
                out[ref.rsplit("Patient/", 1)[1]].append(r)
            else:
                shared.append(r)
    for rs in out.values():
        rs.extend(shared)
    return dict(out)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'pop.db'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def pg_url(postgres_url: str) -> str:
    Database(postgres_url).upgrade()
    return postgres_url


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """The session's PostgreSQL database with the population tables emptied (tests run serially)."""
    from sqlalchemy import text

    db = Database(pg_url)
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE population_run, population_patient, population_nodule, population_exam, "
                          "population_nodule_cache, worklist_item, worklist_event, coordinator_session, audit_event, "
                          "imaging_feature_cache RESTART IDENTITY"))
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Database:
    """Each test that takes this runs on SQLite (embedded default) and PostgreSQL (production)."""
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    db: Database = request.getfixturevalue(name)
    return db
