"""The runtime interface risk/assess calls: predictions, intervals, explanations, abstention, loading errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from fusion_models.errors import ArtifactInvalid, ArtifactNotFound
from fusion_models.runtime import FusionPrediction, FusionPredictor, load_predictor
from fusion_models.schema import Task
from fusion_models.torch_fusion import FrozenNetwork, load_network
from fusion_models.training import TaskResult
from tests.fusion_models.conftest import TINY_VERSION

Registry = tuple[Path, list[TaskResult]]


def _rows(frame: pl.DataFrame, names: tuple[str, ...], n: int = 8) -> list[dict[str, Any]]:
    rows = frame.select(names).head(n).to_dicts()
    return [{k: (bool(v) if isinstance(v, int) and k in ("copd", "emphysema", "personal_history_cancer",
                                                          "family_history_lung_cancer", "nodule_upper_lobe") else v)
             for k, v in r.items()} for r in rows]


@pytest.fixture(scope="module")
def patient(tiny_registry: Registry) -> Any:
    return load_predictor(tiny_registry[0], TINY_VERSION, task="patient")


@pytest.fixture(scope="module")
def nodule(tiny_registry: Registry) -> Any:
    return load_predictor(tiny_registry[0], TINY_VERSION, task="nodule")


def test_predictor_satisfies_the_agreed_protocol(patient: Any) -> None:
    assert isinstance(patient, FusionPredictor)
    assert patient.version == TINY_VERSION and patient.model_id == "fusion-patient"
    assert patient.horizon_years == 6.0 and patient.trained_on_synthetic_data
    assert patient.calibrator.startswith("platt-")


def test_prediction_with_interval_and_readable_factors(patient: Any, tiny_tables_fixture: dict) -> None:
    for row in _rows(tiny_tables_fixture[Task.PATIENT], patient.schema.names):
        pred = patient.predict_one(row)
        assert pred.abstain_reason is None and pred.probability is not None
        assert pred.interval is not None and pred.interval[0] <= pred.probability <= pred.interval[1]
        sizes = [abs(c.contribution) for c in pred.contributions]
        assert sizes == sorted(sizes, reverse=True) and 0 < len(sizes) <= 6
        assert all(c.description and c.feature in patient.schema for c in pred.contributions)


def test_contributions_are_the_blend_of_treeshap_and_occlusion(patient: Any, tiny_tables_fixture: dict) -> None:
    tm = patient.task_model
    x = tm.schema.encode_frame(tiny_tables_fixture[Task.PATIENT].head(20))
    if tm.xgb is not None:  # TreeSHAP rows sum to the margin
        np.testing.assert_allclose(tm.xgb.contributions(x).sum(axis=1), tm.xgb.margin(x), rtol=1e-5, atol=1e-5)
    z, per_feature = tm.explain_encoded(x[:1])
    assert z == pytest.approx(float(tm.score(x[:1])[0]), abs=1e-5)
    assert per_feature.shape == (len(tm.schema.names),)


def test_frozen_network_equals_the_eager_network(tiny_registry: Registry, tiny_tables_fixture: dict,
                                                 patient: Any) -> None:
    net = load_network(tiny_registry[0] / TINY_VERSION / "patient")
    frozen = FrozenNetwork(net)
    x = patient.schema.encode_frame(tiny_tables_fixture[Task.PATIENT].head(50))
    with torch.no_grad():
        eager = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(frozen.logits(x), eager, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(frozen.logits(x[:1]), eager[:1], rtol=1e-4, atol=1e-5)  # batch size 1 too


def test_network_imaging_branch_is_off_without_imaging(tiny_registry: Registry, patient: Any) -> None:
    net = FrozenNetwork(load_network(tiny_registry[0] / TINY_VERSION / "patient"))
    x = patient.schema.encode_row({"age_years": 64.0, "smoking_status": "current", "pack_years": 40.0})
    # with every imaging column missing, the imaging embedding is multiplied by has_imaging = 0, so the imaging
    # branch's weights cannot matter: perturbing them leaves the logit unchanged
    base = net.logits(x)
    eager = load_network(tiny_registry[0] / TINY_VERSION / "patient")
    with torch.no_grad():
        for p in eager.imaging.parameters():
            p.add_(1.0)
    np.testing.assert_allclose(FrozenNetwork(eager).logits(x), base, rtol=1e-6, atol=1e-6)
    z, occlusion = net.occlusion(x, tuple(patient.schema.slots(n) for n in patient.schema.names))
    assert z == pytest.approx(float(base[0]), abs=1e-6) and occlusion.shape == (len(patient.schema.names),)


def test_patients_without_imaging_or_labs_are_scored(patient: Any, tiny_tables_fixture: dict) -> None:
    row = _rows(tiny_tables_fixture[Task.PATIENT], patient.schema.names, 1)[0]
    no_imaging = {k: (None if patient.schema[k].modality.value == "imaging" else v) for k, v in row.items()}
    no_labs = {k: (None if k.startswith("lab_") else v) for k, v in row.items()}
    for r in (no_imaging, no_labs):
        pred = patient.predict_one(r)
        assert pred.probability is not None, pred.abstain_reason


@pytest.mark.parametrize(("change", "reason"), [
    ({"age_years": None}, "required input missing: age_years"),
    ({"smoking_status": None}, "required input missing: smoking_status"),
    ({"age_years": 110.0}, "age_years = 110 a is outside the training range"),
    ({"race_ethnicity": "native_hawaiian_pacific_islander"}, "was not seen in training"),
])
def test_abstains_with_a_reason(patient: Any, tiny_tables_fixture: dict, change: dict, reason: str) -> None:
    row = {**_rows(tiny_tables_fixture[Task.PATIENT], patient.schema.names, 1)[0], **change}
    pred = patient.predict_one(row)
    assert pred.probability is None and pred.interval is None and not pred.contributions
    assert pred.abstain_reason is not None and reason in pred.abstain_reason


@pytest.mark.parametrize(("change", "field"), [
    ({"age_years": "old"}, "age_years"), ({"copd": "yes"}, "copd"), ({"bmi": 500.0}, "bmi"),
    ({"shoe_size": 42.0}, "shoe_size"),
])
def test_bad_values_raise_naming_the_feature(patient: Any, tiny_tables_fixture: dict, change: dict,
                                             field: str) -> None:
    row = {**_rows(tiny_tables_fixture[Task.PATIENT], patient.schema.names, 1)[0], **change}
    with pytest.raises(ValueError, match=field):
        patient.predict_one(row)


def test_batch_scoring_equals_one_row_scoring(patient: Any, tiny_tables_fixture: dict) -> None:
    frame = tiny_tables_fixture[Task.PATIENT].head(40)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("age_years"))
                               .alias("age_years"))
    batch = patient.predict_frame(frame)
    for i, row in enumerate(_rows(frame, patient.schema.names, 40)):
        one = patient.predict_one(row)
        if one.probability is None:
            assert batch["probability"][i] is None and "age_years" in batch["abstain_reason"][i]
        else:
            assert batch["probability"][i] == pytest.approx(one.probability, rel=1e-6)
            assert batch["abstain_reason"][i] is None


def test_nodule_aggregation_is_the_most_suspicious_nodule(nodule: Any, tiny_tables_fixture: dict) -> None:
    rows = _rows(tiny_tables_fixture[Task.NODULE], nodule.schema.names, 4)
    out = nodule.predict_patient_nodules(rows)
    probabilities = [p.probability for p in out.nodules]
    assert out.patient.probability == max(probabilities)
    assert out.index == probabilities.index(max(probabilities))
    none = nodule.predict_patient_nodules([])
    assert none.patient.abstain_reason == "no nodules to score" and none.index is None
    bad = nodule.predict_patient_nodules([{**rows[0], "nodule_diameter_mm": None}])
    assert bad.patient.abstain_reason is not None and "nodule_diameter_mm" in bad.patient.abstain_reason


def test_prediction_invariants() -> None:
    with pytest.raises(ValueError):
        FusionPrediction(probability=None, interval=None, contributions=(), abstain_reason=None)
    with pytest.raises(ValueError):
        FusionPrediction(probability=0.5, interval=(0.6, 0.7), contributions=(), abstain_reason=None)


def _copy(tiny_registry: Registry, tmp_path: Path) -> Path:
    shutil.copytree(tiny_registry[0] / TINY_VERSION, tmp_path / TINY_VERSION)
    return tmp_path


def test_unknown_version_or_task(tiny_registry: Registry) -> None:
    with pytest.raises(ArtifactNotFound, match="known: tiny-1"):
        load_predictor(tiny_registry[0], "no-such-version")
    with pytest.raises(ValueError, match="task"):
        load_predictor(tiny_registry[0], TINY_VERSION, task="lobe")


def test_schema_hash_mismatch_is_refused(tiny_registry: Registry, tmp_path: Path) -> None:
    root = _copy(tiny_registry, tmp_path)
    task = root / TINY_VERSION / "patient" / "task.json"
    data = json.loads(task.read_text())
    data["schema_hash"] = "0" * 64
    task.write_text(json.dumps(data))
    with pytest.raises(ArtifactInvalid, match="feature schema"):
        load_predictor(root, TINY_VERSION)


def test_swapped_calibrator_is_refused(tiny_registry: Registry, tmp_path: Path) -> None:
    root = _copy(tiny_registry, tmp_path)
    cal = root / TINY_VERSION / "patient" / "calibrator.json"
    data = json.loads(cal.read_text())
    data["a"] = data["a"] * 1.5
    cal.write_text(json.dumps(data))
    with pytest.raises(ArtifactInvalid, match="calibrator"):
        load_predictor(root, TINY_VERSION)


def test_missing_file_is_refused(tiny_registry: Registry, tmp_path: Path) -> None:
    root = _copy(tiny_registry, tmp_path)
    (root / TINY_VERSION / "nodule" / "training_ranges.json").unlink()
    with pytest.raises(ArtifactInvalid, match="missing"):
        load_predictor(root, TINY_VERSION, task="nodule")


def test_xgboost_only_blend_does_not_import_torch(tiny_registry: Registry, tmp_path: Path) -> None:
    root = _copy(tiny_registry, tmp_path)
    task = root / TINY_VERSION / "patient" / "task.json"
    data = json.loads(task.read_text())
    data["blend"]["xgb_weight"], data["blend"]["torch_weight"] = 1.0, 0.0
    task.write_text(json.dumps(data))
    code = ("import sys; from fusion_models.runtime import load_predictor; "
            f"p = load_predictor({str(root)!r}, {TINY_VERSION!r}); "
            "print(p.predict_one({'age_years': 60.0, 'smoking_status': 'never'}).probability is not None, "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["True", "False"]


def test_direct_treeshap_call_equals_the_public_api(patient: Any, tiny_tables_fixture: dict) -> None:
    tm = patient.task_model
    if tm.xgb is None:
        pytest.skip("blend without XGBoost")
    x = tm.schema.encode_frame(tiny_tables_fixture[Task.PATIENT].head(5))
    for i in range(5):
        np.testing.assert_array_equal(tm.xgb.contributions_one(x[i:i + 1]), tm.xgb.contributions(x[i:i + 1])[0])
