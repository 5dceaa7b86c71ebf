"""``risk imaging``: JSON out, the feature cache warmed, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from risk.cli import main
from risk.config import StoreSettings
from risk.imaging.cache import ImagingFeatureCache
from risk.store import open_database

CORPUS = Path(__file__).resolve().parents[1] / "data" / "dicom"


def test_prints_tracks_and_warms_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/risk.db"
    monkeypatch.setenv("RISK_STORE__URL", url)
    expected = json.loads((CORPUS / "expected.json").read_text())
    status = main(["imaging", "--patient-id", expected["patient_id"], "--as-of", "2026-06-30",
                   "--dicom-dir", str(CORPUS / "corpus")])
    assert status == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"]["state"] == "ok" and out["tracks"] and out["studies"]
    assert {n["code"] for n in out["notes"]} >= {"malformed", "missing-value", "duplicate"}
    db = open_database(StoreSettings(url=url))
    try:
        baseline = expected["cases"]["baseline"]["sop_instance_uid"]
        assert ImagingFeatureCache(db).get(baseline) is not None
    finally:
        db.dispose()


def test_unreadable_pacs_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["imaging", "--patient-id", "X", "--no-cache", "--dicom-dir", str(tmp_path / "absent")]) == 1
    assert json.loads(capsys.readouterr().out)["status"]["state"] == "unavailable"


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["imaging", "--no-cache"]) == 2
    assert "patient_id" in capsys.readouterr().err
