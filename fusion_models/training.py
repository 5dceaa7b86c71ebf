"""Training one artifact from feature tables: split, fit, select, calibrate, evaluate, write.

Input: one feature table per task (polars, or parquet written by ``risk features build``) with

* every feature of the task's schema (fusion_models/features.py), nulls for missing values;
* ``patient_id`` (the split is grouped by patient, so one patient's nodules never straddle splits) and, for the
  nodule task, ``nodule_id``;
* the label column of the schema (0/1): ``lung_cancer`` (patient) or ``malignant`` (nodule);
* optionally published-model baselines as probabilities: ``baseline_plcom2012`` (patient; null where it does
  not apply, i.e. never-smokers) and ``baseline_brock`` (nodule);
* optionally subgroup columns for the report: ``race_ethnicity``, ``sex``, ``smoking_status`` (features anyway),
  ``scanner_vendor``, ``scanner_kernel``, ``site``.

Steps per task: patient-grouped stratified split (train/validation/test = 60/20/20 by default) → XGBoost with
early stopping on validation → late-fusion network with early stopping on validation → blend weight selected on
validation (fusion_models/blend.py) → calibrator fitted on validation → artifact written → the artifact is
*loaded back through the runtime* and evaluated on the untouched test split against the baselines (XGBoost on
imaging features only, on EHR features only, and the published model), so the report describes exactly what
ships.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from fusion_models.artifacts import (
    CALIBRATOR_FILE,
    GOLDEN_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    RANGES_FILE,
    REPORT_FILE,
    SCHEMA_FILE,
    TASK_FILE,
    ArtifactManifest,
    TaskManifest,
    check_version,
    data_digest,
    library_versions,
    write_json,
)
from fusion_models.blend import select_blend
from fusion_models.calibration import CalibratorKind, PlattCalibrator, fit_calibrator
from fusion_models.errors import InsufficientData, TableInvalid
from fusion_models.evaluate import (
    NODULE_THRESHOLDS,
    PATIENT_THRESHOLDS,
    EvaluationReport,
    ModelScores,
    age_band_expr,
    best_baseline,
    evaluate,
    markdown,
    plot_decision_curve,
    plot_reliability,
)
from fusion_models.features import schema_for
from fusion_models.model_card import model_card
from fusion_models.runtime import TaskModel
from fusion_models.schema import FeatureSchema, Modality, Task, TrainingRanges, require_columns
from fusion_models.xgb import XgbModel, XgbParams, train_booster

FloatArray = npt.NDArray[np.float64]
log = logging.getLogger(__name__)

MIN_TRAINING_ROWS = 200
MIN_TRAINING_EVENTS = 20
PUBLISHED_BASELINE = {Task.PATIENT: "baseline_plcom2012", Task.NODULE: "baseline_brock"}
PUBLISHED_BASELINE_TEXT = {
    "baseline_plcom2012": "PLCOm2012 6-year risk (Tammemägi NEJM 2013); ever-smokers only",
    "baseline_brock": "Brock/PanCan model 2b (McWilliams NEJM 2013)",
}
OUTCOMES = {Task.PATIENT: "lung cancer diagnosis", Task.NODULE: "nodule malignancy"}


@dataclass(frozen=True)
class TaskConfig:
    task: Task
    model_id: str
    horizon_years: float | None = 6.0
    calibrator: CalibratorKind = CalibratorKind.PLATT
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    n_boot: int = 500
    xgb: XgbParams = field(default_factory=XgbParams)
    torch_params: Any = None
    """fusion_models.torch_fusion.TorchParams (typed loosely so importing this module does not import torch)."""
    min_rows: int = MIN_TRAINING_ROWS
    min_events: int = MIN_TRAINING_EVENTS

    def __post_init__(self) -> None:
        if self.horizon_years is not None and not 1.0 <= self.horizon_years <= 6.0:
            raise ValueError('Argument "horizon_years" must lie in 1-6 years.')
        if not 0 < self.val_fraction < 0.5 or not 0 < self.test_fraction < 0.5:
            raise ValueError('Arguments "val_fraction" and "test_fraction" must lie in (0, 0.5).')


class _Stopwatch:
    """Seconds per training stage (logged, and stored in metrics.json)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now
        log.info("%s: %s took %.1f s", self.task, stage, self.seconds[stage])


@dataclass
class TaskResult:
    task: Task
    directory: Path
    manifest: TaskManifest
    report: EvaluationReport


def split_rows(patient_ids: Sequence[str], labels: FloatArray, *, val_fraction: float, test_fraction: float,
               seed: int) -> npt.NDArray[np.str_]:
    """"train"/"val"/"test" per row, grouped by patient and stratified by whether the patient has an event."""
    ids = np.asarray(patient_ids)
    per_patient = pl.DataFrame({"pid": ids, "y": labels}).group_by("pid").agg(pl.col("y").max()).sort("pid")
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for positive in (0.0, 1.0):
        group = per_patient.filter(pl.col("y") == positive).get_column("pid").to_numpy()
        group = group[rng.permutation(group.size)]
        n_test = round(group.size * test_fraction)
        n_val = round(group.size * val_fraction)
        for i, pid in enumerate(group):
            assignment[str(pid)] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    return np.array([assignment[str(p)] for p in ids])


def check_table(frame: pl.DataFrame, schema: FeatureSchema, *, min_rows: int, min_events: int) -> FloatArray:
    id_cols = ["patient_id"] + (["nodule_id"] if schema.task is Task.NODULE else [])
    try:
        require_columns(frame, [*id_cols, schema.label, *schema.names], f"{schema.task.value} feature table")
    except ValueError as exc:
        raise TableInvalid(str(exc)) from exc
    label = frame.get_column(schema.label)
    if label.null_count():
        raise TableInvalid(f'Column "{schema.label}" has {label.null_count()} missing labels.')
    y = label.cast(pl.Float64).to_numpy()
    if not np.all((y == 0) | (y == 1)):
        raise TableInvalid(f'Column "{schema.label}" must be 0/1.')
    events = int(y.sum())
    if frame.height < min_rows or events < min_events or frame.height - events < min_events:
        raise InsufficientData(f"{schema.task.value}: {frame.height} rows with {events} events; training needs at "
                               f"least {min_rows} rows and {min_events} events and non-events")
    return y


def _platt_probabilities(z_val: FloatArray, y_val: FloatArray, z_test: FloatArray) -> FloatArray:
    return PlattCalibrator.fit(z_val, y_val).predict(z_test)


def _blank(x: npt.NDArray[np.float32], schema: FeatureSchema) -> npt.NDArray[np.float32]:
    out = x.copy()
    out[:, list(schema.modality_columns(Modality.IMAGING))] = np.nan
    return out


def _imaging_dropout(x: npt.NDArray[np.float32], y: FloatArray, schema: FeatureSchema, share: float, seed: int
                     ) -> tuple[npt.NDArray[np.float32], FloatArray]:
    """The training rows plus a ``share`` of them again with every imaging input blanked.

    The synthetic cohort (a screening programme) has a CT for everyone, so without this XGBoost would never see
    a patient without imaging and its default split directions for "no CT" would be arbitrary; with it the trees
    learn the EHR-only answer for such patients (the network gets the same through modality dropout).
    """
    if share <= 0:
        return x, y
    rng = np.random.default_rng(seed + 7919)
    rows = np.flatnonzero(rng.random(x.shape[0]) < share)
    return np.concatenate([x, _blank(x[rows], schema)]), np.concatenate([y, y[rows]])


def _single_modality(x: npt.NDArray[np.float32], y: FloatArray, split: npt.NDArray[np.str_], schema: FeatureSchema,
                     modality: Modality, params: XgbParams) -> FloatArray:
    """Test-split probabilities of XGBoost on one modality's columns (Platt-calibrated on validation)."""
    cols = list(schema.modality_columns(modality))
    sub = schema.subset(modality)
    tr, va, te = split == "train", split == "val", split == "test"
    booster = train_booster(x[tr][:, cols], y[tr], x[va][:, cols], y[va], sub.encoded_columns, params)
    model = XgbModel(booster, nthread=params.nthread)
    return _platt_probabilities(model.margin(x[va][:, cols]), y[va], model.margin(x[te][:, cols]))


def train_task(frame: pl.DataFrame, config: TaskConfig, task_dir: Path, version: str,
               trained_on_synthetic_data: bool = True) -> TaskResult:
    from fusion_models.torch_fusion import FrozenNetwork, TorchParams, save_network, train_network

    schema = schema_for(config.task)
    watch = _Stopwatch(config.task.value)
    y = check_table(frame, schema, min_rows=config.min_rows, min_events=config.min_events)
    if "age_years" in frame.columns and "age_band" not in frame.columns:
        frame = frame.with_columns(age_band_expr())
    ids = frame.get_column("patient_id").cast(pl.String).to_list()
    row_ids = ids if config.task is Task.PATIENT else frame.get_column("nodule_id").cast(pl.String).to_list()
    split = split_rows(ids, y, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed)
    tr, va, te = split == "train", split == "val", split == "test"
    for name, mask in (("train", tr), ("validation", va), ("test", te)):
        if y[mask].sum() < 2 or (1 - y[mask]).sum() < 2:
            raise InsufficientData(f"{config.task.value}: the {name} split has too few events or non-events")
    x = schema.encode_frame(frame)
    torch_params = config.torch_params or TorchParams(seed=config.seed)

    watch.lap("encode and split")
    # Imaging dropout only where a row can lack imaging: a nodule row always has its nodule (diameter required).
    patient_task = config.task is Task.PATIENT
    if not patient_task:
        torch_params = dataclasses.replace(torch_params, imaging_dropout=0.0)
    x_tr, y_tr = _imaging_dropout(x[tr], y[tr], schema, config.xgb.imaging_dropout if patient_task else 0.0,
                                  config.seed)
    booster = train_booster(x_tr, y_tr, x[va], y[va], schema.encoded_columns, config.xgb)
    xgb_model = XgbModel(booster, nthread=config.xgb.nthread)
    watch.lap("xgboost")
    net, net_history = train_network(x[tr], y[tr], x[va], y[va], schema.modality_columns(Modality.EHR),
                                     schema.modality_columns(Modality.IMAGING), torch_params)
    frozen = FrozenNetwork(net, threads=torch_params.threads)
    watch.lap("network")
    z_xgb_val, z_net_val = xgb_model.margin(x[va]), frozen.logits(x[va])
    blend = select_blend(z_xgb_val, z_net_val, y[va])
    z_val = blend.combine(z_xgb_val, z_net_val)
    calibrator = fit_calibrator(config.calibrator, z_val, y[va],
                                fitted_on=f"validation split: {int(va.sum())} rows, {int(y[va].sum())} events")
    ranges = TrainingRanges.from_frame(schema, frame.filter(pl.Series(tr)))

    if task_dir.exists():
        shutil.rmtree(task_dir)
    task_dir.mkdir(parents=True)
    xgb_model.save(task_dir)
    save_network(net, task_dir)
    write_json(task_dir / CALIBRATOR_FILE, calibrator.to_json())
    write_json(task_dir / SCHEMA_FILE, schema.to_json())
    write_json(task_dir / RANGES_FILE, ranges.to_json())
    manifest = TaskManifest(
        task=config.task.value, model_id=config.model_id, version=version, outcome=OUTCOMES[config.task],
        horizon_years=config.horizon_years if config.task is Task.PATIENT else None, schema_name=schema.name,
        schema_hash=schema.hash, blend=blend.to_json(), calibrator_id=calibrator.id,
        calibrator_kind=calibrator.kind.value, trained_on_synthetic_data=trained_on_synthetic_data,
        training_data_digest=data_digest(x, y, row_ids),
        split_sizes={"train": int(tr.sum()), "validation": int(va.sum()), "test": int(te.sum()),
                     "train_events": int(y[tr].sum()), "validation_events": int(y[va].sum()),
                     "test_events": int(y[te].sum())},
        libraries=library_versions(),
        headline_metrics={},
    )
    write_json(task_dir / TASK_FILE, manifest.to_json())
    watch.lap("select, calibrate, write")

    # --- evaluate what ships: the artifact loaded back through the runtime -------------------------------------
    shipped = TaskModel(task_dir, threads=1)
    p_fusion = shipped.predict_matrix(x[te])
    models = [
        ModelScores("fusion", p_fusion, description="shipped model"),
        ModelScores("xgboost", _platt_probabilities(z_xgb_val, y[va], xgb_model.margin(x[te]))),
        ModelScores("late_fusion_net", _platt_probabilities(z_net_val, y[va], frozen.logits(x[te]))),
        ModelScores("imaging_only", _single_modality(x, y, split, schema, Modality.IMAGING, config.xgb)),
        ModelScores("ehr_only", _single_modality(x, y, split, schema, Modality.EHR, config.xgb)),
    ]
    if patient_task:
        models.append(ModelScores("fusion_without_imaging", shipped.predict_matrix(_blank(x[te], schema)),
                                  description="shipped model with every imaging input removed (as for a patient "
                                              "without CT)"))
    watch.lap("baselines")
    baselines = ["imaging_only", "ehr_only"]
    published = PUBLISHED_BASELINE[config.task]
    test_frame = frame.filter(pl.Series(te))
    notes: list[str] = []
    if published in frame.columns:
        values = test_frame.get_column(published).cast(pl.Float64).to_numpy()
        mask = np.isfinite(values)
        if mask.sum() and y[te][mask].sum() >= 2 and (1 - y[te][mask]).sum() >= 2:
            models.append(ModelScores(published, np.where(mask, values, 0.0), mask=None if mask.all() else mask,
                                      description=PUBLISHED_BASELINE_TEXT[published]))
            baselines.append(published)
        else:
            notes.append(f"{published}: too few scored test rows to evaluate")
    else:
        notes.append(f"{published}: column absent from the feature table; published baseline not evaluated")
    thresholds = PATIENT_THRESHOLDS if config.task is Task.PATIENT else NODULE_THRESHOLDS
    report = evaluate(config.task.value, y[te], "fusion", models, frame=test_frame, thresholds=thresholds,
                      baselines=baselines, n_boot=config.n_boot, seed=config.seed)
    watch.lap("evaluate (bootstrap)")
    report.notes.extend(notes)
    report.notes.append(f"blend selected on validation: xgb weight {blend.xgb_weight:g}, network weight "
                        f"{blend.torch_weight:g} (validation log-loss by xgb weight: "
                        + ", ".join(f"{k}: {v:.4f}" for k, v in blend.validation_logloss.items()) + ")")
    report.notes.append(f"network: best epoch {net_history['best_epoch']}, validation log-loss "
                        f"{net_history['best_val_logloss']:.4f}; XGBoost: {booster.num_boosted_rounds()} trees of "
                        f"depth ≤ {config.xgb.max_depth}")
    full_scores = {m.name: m.probability for m in models if m.mask is None}
    t_max = 0.1 if config.task is Task.PATIENT else 0.8
    plot_reliability(report, task_dir / "reliability.png", ["fusion", "imaging_only", "ehr_only"],
                     f"{config.task.value}: reliability (test split)")
    plot_decision_curve(y[te], full_scores, task_dir / "decision_curve.png", t_max,
                        f"{config.task.value}: decision curve (test split)")
    report.plots = ["reliability.png", "decision_curve.png"]
    descriptions = {m.name: m.description for m in models}
    descriptions.update({"xgboost": "XGBoost on all features (component)",
                         "late_fusion_net": "late-fusion network (component)",
                         "imaging_only": "XGBoost on imaging features only",
                         "ehr_only": "XGBoost on EHR features only"})
    title = f"Task {config.task.value}: {schema.label_description}"
    (task_dir / REPORT_FILE).write_text(markdown(report, title, descriptions))
    metrics = report.to_json()
    metrics["network_training"] = net_history
    metrics["xgboost_params"] = config.xgb.to_json()
    metrics["torch_params"] = torch_params.to_json()
    watch.lap("plots and report")
    metrics["training_seconds"] = watch.seconds
    write_json(task_dir / METRICS_FILE, _finite(metrics))

    best = best_baseline(report)
    headline = {"test_auc": report.aucs["fusion"].to_json(), "test_brier": report.brier["fusion"],
                "calibration_slope": report.calibration["fusion"].slope,
                "calibration_intercept": report.calibration["fusion"].intercept,
                "best_baseline": best}
    manifest = TaskManifest(**{**manifest.to_json(), "headline_metrics": _finite(headline)})
    write_json(task_dir / TASK_FILE, manifest.to_json())
    write_golden(TaskModel(task_dir, threads=1), test_frame, schema, task_dir)
    return TaskResult(config.task, task_dir, manifest, report)


def write_golden(model: TaskModel, frame: pl.DataFrame, schema: FeatureSchema, task_dir: Path, n: int = 6) -> None:
    """Record a few input rows and this artifact's predictions for them (the golden-prediction test's data)."""
    rows = [{k: _json_value(r[k]) for k in schema.names} for r in frame.head(n).iter_rows(named=True)]
    abstaining = dict(rows[0])
    required = next(s.name for s in schema.features if s.required)
    abstaining[required] = None
    rows.append(abstaining)
    cases = []
    for row in rows:
        pred = model.predict_one(row)
        cases.append({"features": row, "probability": pred.probability,
                      "interval": list(pred.interval) if pred.interval else None,
                      "abstain_reason": pred.abstain_reason,
                      "contributions": [{"feature": c.feature, "contribution": c.contribution,
                                         "description": c.description} for c in pred.contributions]})
    write_json(task_dir / GOLDEN_FILE, {"schema_hash": schema.hash, "cases": cases})


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf → None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.floating | np.integer):
        return _finite(obj.item())
    return obj


def train_artifact(tables: Mapping[Task, pl.DataFrame], registry_dir: Path, version: str,
                   configs: Mapping[Task, TaskConfig], *, description: str, trained_on_synthetic_data: bool = True,
                   data_notes: Sequence[str] = ()) -> list[TaskResult]:
    """Train every task given and write ``registry_dir/version`` (replacing an unfinished one of that name)."""
    check_version(version)
    if not tables:
        raise ValueError('Argument "tables" must give at least one task.')
    out = Path(registry_dir) / version
    if (out / MANIFEST_FILE).exists():
        raise FileExistsError(f"artifact {version!r} already exists in {registry_dir}; choose a new version")
    out.mkdir(parents=True, exist_ok=True)
    results = [train_task(tables[task], configs[task], out / task.value, version, trained_on_synthetic_data)
               for task in sorted(tables, key=lambda t: t.value)]
    manifest = ArtifactManifest(version=version, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                tasks=tuple(r.task.value for r in results),
                                trained_on_synthetic_data=trained_on_synthetic_data, description=description)
    (out / MODEL_CARD_FILE).write_text(model_card(manifest, results, data_notes))
    write_json(out / MANIFEST_FILE, manifest.to_json())
    return results


def summary(results: Sequence[TaskResult]) -> str:
    lines = []
    for r in results:
        h = r.manifest.headline_metrics
        best = h.get("best_baseline") or {}
        diff = best.get("auc_difference") or {}
        lines.append(json.dumps({"task": r.task.value, "test_auc": h.get("test_auc"),
                                 "calibration_slope": h.get("calibration_slope"),
                                 "best_baseline": best.get("baseline"), "auc_margin": diff}))
    return "\n".join(lines)
