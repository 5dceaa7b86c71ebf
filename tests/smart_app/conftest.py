"""Fixtures for the SMART app tests.

In-process tests: the service with a hand-built assessor, on a throwaway SQLite store. End-to-end tests: a small
synthetic cohort (``risk synth``) loaded into the local stack (``risk load``), shared by the browser modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import Settings, load_settings
from tests.conftest import Stack
from tests.smart_app.builders import HandBuiltAssessor, smart_of
from tests.smart_app.e2e import ROOT


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(store={"url": f"sqlite:///{tmp_path}/risk.db"},
                         fhir={"base_url": "http://127.0.0.1:9/fhir/R4"},
                         smart={"secure_cookies": False})


@pytest.fixture
def assessor() -> HandBuiltAssessor:
    return HandBuiltAssessor()


@pytest.fixture
def client(settings: Settings, assessor: HandBuiltAssessor) -> Iterator[TestClient]:
    app = create_app(settings)
    # swap in the hand-built assessor (the real pipeline is exercised by the end-to-end tests)
    with TestClient(app, base_url="http://127.0.0.1:18700") as c:
        smart_of(c).assessor = assessor
        yield c


# --- end to end: a small synthetic cohort in the local stack ------------------------------------------------
@pytest.fixture(scope="session")
def cohort(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic cohort in the stack: RISK_TEST_COHORT (already loaded) or synthesised and loaded here."""
    given = os.environ.get("RISK_TEST_COHORT")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("cohort") / "c"
    run = [sys.executable, "-m", "risk"]
    synth = subprocess.run([*run, "synth", "--out", str(out), "--patients", "8", "--seed", "7", "--site", "site-b",
                            "--workers", "1", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert synth.returncode == 0, synth.stderr[-2000:]
    load = subprocess.run([*run, "load", str(out), "--env-file", str(stack.env_file), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-2000:] + load.stdout[-2000:]
    return out


@pytest.fixture(scope="session")
def truth(cohort: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(cohort / "truth" / f"{name}.parquet") for name in ("patients", "nodules")}


@pytest.fixture(scope="session")
def patient_id(truth: dict[str, pl.DataFrame]) -> str:
    """The patient with the most nodule measurements on more than one study (a growth call to show), preferring
    one without a recorded lung cancer (so PLCOm2012 and the guidelines apply)."""
    healthy = truth["patients"].filter(~pl.col("lung_cancer_recorded"))["patient_id"]
    n = truth["nodules"].filter(pl.col("detected_by_ai"))
    if n.filter(pl.col("patient_id").is_in(healthy.implode())).height:
        n = n.filter(pl.col("patient_id").is_in(healthy.implode()))
    per = (n.group_by("patient_id", "tracking_uid").agg(pl.len().alias("k")).filter(pl.col("k") >= 2)
           .group_by("patient_id").agg(pl.col("k").sum()).sort(["k", "patient_id"], descending=[True, False]))
    assert per.height, "the cohort has no nodule seen on two studies"
    return str(per["patient_id"][0])
