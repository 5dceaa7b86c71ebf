"""Training writes a complete, versioned artifact whose reports describe what the runtime loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fusion_models.artifacts import ArtifactManifest, TaskManifest
from fusion_models.errors import InsufficientData, TableInvalid
from fusion_models.features import PATIENT_SCHEMA
from fusion_models.registry import Registry
from fusion_models.runtime import TaskModel
from fusion_models.schema import Task
from fusion_models.training import TaskResult, check_table, split_rows, train_artifact
from tests.fusion_models.conftest import TINY_VERSION, tiny_configs
from tests.fusion_models.standin import patient_table

TASK_FILES = ("task.json", "schema.json", "training_ranges.json", "xgb.ubj", "torch_fusion.pt", "torch_fusion.json",
              "calibrator.json", "golden.json", "metrics.json", "report.md", "reliability.png", "decision_curve.png")


def test_artifact_layout_and_manifest(tiny_registry: tuple[Path, list[TaskResult]]) -> None:
    root, _ = tiny_registry
    art = root / TINY_VERSION
    manifest = ArtifactManifest.from_json(json.loads((art / "manifest.json").read_text()))
    assert manifest.version == TINY_VERSION and set(manifest.tasks) == {"patient", "nodule"}
    assert manifest.trained_on_synthetic_data
    card = (art / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card and "Intended use" in card
    for task in manifest.tasks:
        for name in TASK_FILES:
            assert (art / task / name).is_file(), (task, name)
        tm = TaskManifest.from_json(json.loads((art / task / "task.json").read_text()))
        assert tm.schema_hash == json.loads((art / task / "schema.json").read_text())["hash"]
        assert tm.training_data_digest.startswith("sha256:")
        assert tm.split_sizes["train"] > tm.split_sizes["test"] > 0
        assert "xgboost" in tm.libraries and "torch" in tm.libraries


def test_reported_metrics_are_the_runtime_s(tiny_registry: tuple[Path, list[TaskResult]]) -> None:
    root, results = tiny_registry
    patient = next(r for r in results if r.task is Task.PATIENT)
    metrics = json.loads((root / TINY_VERSION / "patient" / "metrics.json").read_text())
    assert metrics["auc"]["fusion"]["estimate"] == pytest.approx(patient.report.aucs["fusion"].estimate)
    names = {c["baseline"] for c in metrics["comparisons"]}
    assert names == {"imaging_only", "ehr_only", "baseline_plcom2012"}
    report = (root / TINY_VERSION / "patient" / "report.md").read_text()
    assert "baseline_plcom2012" in report and "Subgroups" in report and "Decision-curve" in report


def test_registry_lists_and_rejects_existing_versions(tiny_registry: tuple[Path, list[TaskResult]],
                                                       tiny_tables_fixture: dict[Task, pl.DataFrame]) -> None:
    root, _ = tiny_registry
    assert [a.version for a in Registry(root).list()] == [TINY_VERSION]
    with pytest.raises(FileExistsError):
        train_artifact(tiny_tables_fixture, root, TINY_VERSION, tiny_configs(), description="again")


def test_split_is_grouped_by_patient_and_stratified() -> None:
    ids = [f"p{i // 3}" for i in range(3000)]
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.1).astype(float)
    split = split_rows(ids, y, val_fraction=0.2, test_fraction=0.2, seed=1)
    by_patient: dict[str, set[str]] = {}
    for pid, s in zip(ids, split, strict=True):
        by_patient.setdefault(pid, set()).add(str(s))
    assert all(len(s) == 1 for s in by_patient.values())
    assert abs(np.mean(split == "test") - 0.2) < 0.03
    assert np.array_equal(split, split_rows(ids, y, val_fraction=0.2, test_fraction=0.2, seed=1))


def test_table_checks_name_the_problem() -> None:
    frame = patient_table(300, seed=2)
    with pytest.raises(TableInvalid, match="bmi"):
        check_table(frame.drop("bmi"), PATIENT_SCHEMA, min_rows=10, min_events=2)
    with pytest.raises(TableInvalid, match="missing labels"):
        check_table(frame.with_columns(lung_cancer=pl.lit(None, dtype=pl.Int8)), PATIENT_SCHEMA, min_rows=10,
                    min_events=2)
    with pytest.raises(InsufficientData, match="events"):
        check_table(frame.with_columns(lung_cancer=pl.lit(0, dtype=pl.Int8)), PATIENT_SCHEMA, min_rows=10,
                    min_events=2)


def test_loaded_model_reproduces_training_split_metrics(tiny_registry: tuple[Path, list[TaskResult]],
                                                       tiny_tables_fixture: dict[Task, pl.DataFrame]) -> None:
    root, _ = tiny_registry
    model = TaskModel(root / TINY_VERSION / "nodule")
    frame = tiny_tables_fixture[Task.NODULE]
    p = model.predict_matrix(model.schema.encode_frame(frame))
    assert p.shape == (frame.height,) and np.all((p > 0) & (p < 1))
    # the shipped model ranks malignant nodules higher on average (the stand-in has a strong signal)
    y = frame["malignant"].to_numpy()
    assert p[y == 1].mean() > 2 * p[y == 0].mean()
