"""The composition root: health, readiness, version, start-up validation."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import load_settings


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/risk.db"})
    return TestClient(create_app(settings))


def test_health_ready_version(client: TestClient) -> None:
    with client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/health/ready").json() == {"status": "ready"}
        v = client.get("/version").json()
        assert v["service"] == "lungrisk" and v["synthetic_data"] is True
        assert "not for clinical use" in v["notice"]
        assert client.get("/openapi.json").status_code == 200


def test_start_up_heap_is_frozen_after_every_feature_started(client: TestClient) -> None:
    """What start-up loaded stays out of the collector's full passes while the service runs (risk/app.py)."""
    before = gc.get_freeze_count()
    with client:
        assert gc.get_freeze_count() > before
        assert client.get("/health").status_code == 200
    assert gc.get_freeze_count() == 0


def test_factory_for_uvicorn_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RISK_STORE__URL", f"sqlite:///{tmp_path}/x.db")
    app = create_app()
    assert app.state.settings.store.url.endswith("x.db")


def test_bad_setting_stops_startup_naming_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RISK_CDS__REQUEST_BUDGET_S": "-3", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "risk", "serve"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "RISK_CDS__REQUEST_BUDGET_S" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_settings_command_hides_secrets(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RISK_FHIR__BEARER_TOKEN": "s3cret-token", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "risk", "settings"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-token" not in proc.stdout and '"bearer_token": "***"' in proc.stdout
