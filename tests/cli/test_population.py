"""``risk population``: score from a folder, print a queue, export the registry; bad arguments exit 2 naming the
argument; an unreachable FHIR server exits 1 and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def risk(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "risk", "population", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.population.conftest import synth

    return synth(tmp_path_factory.mktemp("cli") / "c", 120, 9, "--ndjson-only")


def test_score_worklist_and_registry(cohort: Path, tmp_path: Path) -> None:
    env = {"RISK_STORE__URL": f"sqlite:///{tmp_path / 'p.db'}"}
    out = risk("score", "--ndjson", str(cohort / "fhir" / "ndjson"), "--as-of", "2026-06-30", "--sr-tables",
               str(cohort), "--json", env=env)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "complete" and summary["counts"]["patients"] == 120
    assert len(summary["inputs_digest"]) == 64 and summary["model_versions"]["plcom2012"]
    queue = risk("worklist", "--queue", "annual_due", "--as-of", "2026-06-30", env=env)
    assert queue.returncode == 0 and queue.stdout.startswith("Annual screen due or overdue:")
    csv_path = tmp_path / "q.csv"
    assert risk("worklist", "--queue", "annual_due", "--as-of", "2026-06-30", "--csv", str(csv_path),
                env=env).returncode == 0
    assert csv_path.read_text().startswith("item_id,patient_id")
    reg = risk("export-registry", "--from", "2025-07-01", "--to", "2026-06-30", env=env)
    assert reg.returncode == 0 and reg.stdout.startswith("facility,patient_id")
    assert "registry row(s)" in reg.stderr


@pytest.mark.parametrize(("args", "field"), [
    (["score", "--ndjson", "/nonexistent"], "--ndjson"),
    (["score", "--ndjson", ".", "--as-of", "30/06/2026"], "--as-of"),
    (["score", "--ndjson", ".", "--group", "g1"], "--export"),
    (["export-registry", "--from", "2026-06-30", "--to", "2026-01-01"], "--to"),
    (["worklist", "--queue", "everything"], "--queue"),
])
def test_bad_arguments_exit_2_naming_the_argument(args: list[str], field: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from risk.cli import main

    monkeypatch.setenv("RISK_STORE__URL", f"sqlite:///{tmp_path / 'p.db'}")
    assert main(["population", *args]) == 2
    err = capsys.readouterr().err
    assert f"invalid input: {field}" in err and "Traceback" not in err


def test_an_unreachable_fhir_server_is_an_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from risk.cli import main

    for key, value in {"RISK_STORE__URL": f"sqlite:///{tmp_path / 'p.db'}",
                       "RISK_FHIR__BASE_URL": "http://127.0.0.1:9/fhir",
                       "RISK_POPULATION__WORK_DIR": str(tmp_path / "work"),
                       "RISK_POPULATION__EXPORT_TIMEOUT_S": "2"}.items():
        monkeypatch.setenv(key, value)
    assert main(["population", "score", "--export", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "FHIR Bulk Data" in err and "kick-off" in err
