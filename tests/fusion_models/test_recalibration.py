"""Recalibration on a shifted site: the guard, a new version with its parent, better calibration, same ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusion_models.errors import ArtifactNotFound, InsufficientData, TableInvalid
from fusion_models.recalibration import recalibrate
from fusion_models.registry import Registry
from fusion_models.runtime import load_predictor
from fusion_models.training import TaskResult
from tests.fusion_models.conftest import TINY_VERSION
from tests.fusion_models.standin import patient_table


def test_recalibration_on_a_higher_risk_site(tiny_registry: tuple[Path, list[TaskResult]], tmp_path: Path) -> None:
    root, _ = tiny_registry
    site = patient_table(3000, seed=11, shift=1.0)  # odds × e at the new site: the shipped model under-predicts
    result = recalibrate(root, TINY_VERSION, {"patient": site}, "tiny-1+site-x", site="site-x", out_registry=tmp_path)
    report = result.reports["patient"]
    before, after = report["before"], report["after"]
    assert before["calibration_intercept"] > 0.3  # under-prediction at the new site
    assert abs(after["calibration_intercept"]) < abs(before["calibration_intercept"]) / 2
    assert after["auc"] == pytest.approx(before["auc"])  # a monotone map: ranking unchanged
    new = Registry(tmp_path).get("tiny-1+site-x")
    assert new.manifest.parent_version == TINY_VERSION
    task = json.loads((new.path / "patient" / "task.json").read_text())
    assert task["version"] == "tiny-1+site-x" and task["calibrator_id"] == report["calibrator"]["id"]
    assert (new.path / "patient" / "recalibration.md").read_text().count("this site") == 2
    assert (new.path / "patient" / "recalibration_reliability.png").is_file()
    # the recalibrated artifact loads and predicts higher risks for the same row than its parent
    row = {k: (None if isinstance(v, float) and np.isnan(v) else v)
           for k, v in site.select(load_predictor(root, TINY_VERSION).schema.names).row(0, named=True).items()}
    row = {k: (bool(v) if k in ("copd", "emphysema", "personal_history_cancer", "family_history_lung_cancer")
               else v) for k, v in row.items()}
    p_old = load_predictor(root, TINY_VERSION).predict_one(row).probability
    p_new = load_predictor(tmp_path, "tiny-1+site-x").predict_one(row).probability
    assert p_old is not None and p_new is not None and p_new > p_old
    # the nodule task, not recalibrated, keeps the parent's calibrator
    parent_nodule = json.loads((root / TINY_VERSION / "nodule" / "task.json").read_text())
    new_nodule = json.loads((new.path / "nodule" / "task.json").read_text())
    assert new_nodule["calibrator_id"] == parent_nodule["calibrator_id"]


def test_minimum_sample_guard_writes_nothing(tiny_registry: tuple[Path, list[TaskResult]], tmp_path: Path) -> None:
    root, _ = tiny_registry
    small = patient_table(150, seed=12)
    with pytest.raises(InsufficientData, match="at least 200 rows"):
        recalibrate(root, TINY_VERSION, {"patient": small}, "too-small", out_registry=tmp_path)
    assert not (tmp_path / "too-small").exists()
    with pytest.raises(InsufficientData, match="50 events"):
        recalibrate(root, TINY_VERSION, {"patient": patient_table(600, seed=13)}, "iso", kind="isotonic",
                    out_registry=tmp_path)


def test_bad_requests(tiny_registry: tuple[Path, list[TaskResult]], tmp_path: Path) -> None:
    root, _ = tiny_registry
    table = patient_table(300, seed=14)
    with pytest.raises(ArtifactNotFound):
        recalibrate(root, "nope", {"patient": table}, "x", out_registry=tmp_path)
    with pytest.raises(TableInvalid, match="lung_cancer"):
        recalibrate(root, TINY_VERSION, {"patient": table.drop("lung_cancer")}, "x", out_registry=tmp_path)
    with pytest.raises(FileExistsError):
        recalibrate(root, TINY_VERSION, {"patient": table}, TINY_VERSION)
