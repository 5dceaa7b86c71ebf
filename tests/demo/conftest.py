"""Fixtures for the demo tests: the demo EHR's CDS client key, a 3-patient synthetic cohort (``risk synth``), and
the service in-process in the demo environment, reading that cohort from its folders (FHIR bundles, DICOM files).

The simulated EHR calls the service's own CDS endpoint over HTTP; in-process, that HTTP goes through an ASGI
transport to the same application (the real JWT verification, prefetch handling and cards)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import Settings, load_settings
from risk.demo.keys import write_demo_keys
from tests.conftest import Stack, read_stack_env

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:18700"
COHORT_ARGS = ("--patients", "3", "--seed", "7", "--site", "site-b")
"""The first three patients of the SMART app tests' cohort (seed 7, site-b): identical resources, so loading them
into the shared stack changes nothing another test relies on."""


@pytest.fixture(scope="session")
def demo_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``demo-ehr.env`` of a fresh demo EHR key (as ``python -m risk.demo.keys`` writes it)."""
    return write_demo_keys(tmp_path_factory.mktemp("demo-keys"), iss="urn:lungrisk:demo-ehr:test")


@pytest.fixture(scope="session")
def file_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-cohort") / "c"
    done = subprocess.run([sys.executable, "-m", "risk", "synth", "--out", str(out), *COHORT_ARGS, "--workers", "1",
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture
def demo_env(demo_keys: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """``demo_env(RISK_X="...")``: settings loaded from the environment the way ``risk serve`` loads them, with the
    demo key's env file applied (RISK_CDS__ISSUERS as the JSON it writes); ``RISK_X=None`` removes a variable."""

    def make(**env: str | None) -> Settings:
        values = {**read_stack_env(demo_keys), "RISK_ENVIRONMENT": "demo", "RISK_PUBLIC_BASE_URL": BASE,
                  "RISK_SMART__SECURE_COOKIES": "false", "RISK_CDS__REQUEST_BUDGET_S": "30", **env}
        for key, value in values.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        return load_settings()

    return make


@pytest.fixture
def file_settings(demo_env: Callable[..., Settings], file_cohort: Path, tmp_path: Path) -> Settings:
    return demo_env(RISK_STORE__URL=f"sqlite:///{tmp_path}/demo.db",
                    RISK_FHIR__BUNDLE_DIR=str(file_cohort / "fhir" / "bundles"),
                    RISK_DICOMWEB__FILE_DIR=str(file_cohort / "dicom"))


@contextmanager
def demo_client(settings: Settings) -> Iterator[TestClient]:
    """The application in-process; the demo EHR's CDS calls go to the same application over an ASGI transport."""
    app = create_app(settings)
    with TestClient(app, base_url=BASE) as client:
        app.state.demo_ehr.use_http(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                                      timeout=60))
        yield client


@pytest.fixture
def client(file_settings: Settings) -> Iterator[TestClient]:
    with demo_client(file_settings) as c:
        yield c


def cohort_patients(cohort: Path) -> dict[str, dict[str, Any]]:
    """Patient resources of a ``risk synth`` cohort, by id."""
    out = {}
    for bundle in sorted((cohort / "fhir" / "bundles").glob("*.json")):
        for entry in json.loads(bundle.read_text())["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                out[entry["resource"]["id"]] = entry["resource"]
    return out


# --- the local stack ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def stack_cohort(stack: Stack, file_cohort: Path) -> Path:
    """The 3-patient cohort loaded into the local stack (``risk load``: idempotent, identical resources)."""
    done = subprocess.run([sys.executable, "-m", "risk", "load", str(file_cohort), "--env-file", str(stack.env_file),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    return file_cohort


@pytest.fixture
def stack_settings(stack: Stack, demo_env: Callable[..., Settings], tmp_path: Path) -> Settings:
    """The demo service pointed at the stack (FHIR server, PACS, backend client), with the demo EHR's key."""
    env = {k: v for k, v in stack.env.items() if k.startswith("RISK_")}
    return demo_env(**env, RISK_STORE__URL=f"sqlite:///{tmp_path}/stack.db", RISK_FHIR__TIMEOUT_S="30",
                    RISK_DEMO__CDS_TIMEOUT_S="120")
