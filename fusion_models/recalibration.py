"""Recalibrating a shipped artifact on a site's labelled outcomes, with before/after calibration reports.

Only the calibrator changes: the models' scores (and so their ranking, AUC and explanations) stay as shipped.
``recalibrate`` scores the site's feature table with the parent artifact, holds out ``holdout_fraction`` of the
patients (stratified) to measure before and after honestly, fits a new Platt or isotonic calibrator on the rest,
and writes a *new* artifact version (the parent's files, the new calibrator, ``parent_version`` in the manifest,
and ``recalibration.md`` + ``recalibration.json`` + reliability plots in the task directory).

Minimum-sample guard: the fitting part needs at least ``min_rows`` rows and ``min_events`` events and
non-events (defaults 200 and 20; isotonic needs more, see ``MIN_EVENTS_ISOTONIC``), else InsufficientData and
nothing is written. Rows the model abstains on are left out and counted in the report.

Site shift: run on a second site's table (``risk synth --site site-b``): the report compares the training
site's held-out metrics (from the parent's metrics.json), the new site before recalibration, and after.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fusion_models.artifacts import (
    CALIBRATOR_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    TASK_FILE,
    ArtifactManifest,
    TaskManifest,
    check_version,
    read_json,
    write_json,
)
from fusion_models.calibration import Calibrator, CalibratorKind, fit_calibrator
from fusion_models.errors import InsufficientData, TableInvalid
from fusion_models.evaluate import EvaluationReport, auc, brier, calibration, plot_reliability, reliability_bins
from fusion_models.registry import Registry
from fusion_models.runtime import TaskModel, abstain_reasons_frame
from fusion_models.training import split_rows

MIN_ROWS = 200
MIN_EVENTS = 20
MIN_EVENTS_ISOTONIC = 50


@dataclass(frozen=True)
class RecalibrationResult:
    directory: Path
    reports: dict[str, dict[str, Any]]
    """Per task: the before/after report (also written as <task>/recalibration.json)."""


@dataclass
class _Fitted:
    task: str
    model: TaskModel
    calibrator: Calibrator
    report: dict[str, Any]
    y_hold: np.ndarray
    before: np.ndarray
    after: np.ndarray
    holdout: pl.DataFrame


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    c = calibration(y, p)
    return {"n": int(y.size), "events": int(y.sum()), "auc": auc(y, p), "brier": brier(y, p),
            "calibration_intercept": c.intercept, "calibration_slope": c.slope, "observed_rate": c.observed_rate,
            "mean_predicted": c.mean_predicted, "reliability": reliability_bins(y, p)}


def _fit_task(parent_dir: Path, task: str, frame: pl.DataFrame, *, kind: CalibratorKind, holdout_fraction: float,
              seed: int, site: str, min_rows: int, min_events: int) -> _Fitted:
    model = TaskModel(parent_dir / task)
    schema = model.schema
    missing = [n for n in (*schema.names, "patient_id", schema.label) if n not in frame.columns]
    if missing:
        raise TableInvalid(f"The {task} site table lacks column(s) {missing}.")
    reasons = abstain_reasons_frame(schema, model.ranges, frame)
    keep = reasons.is_null().to_numpy()
    scored = frame.filter(pl.Series(keep))
    label = scored.get_column(schema.label)
    if label.null_count():
        raise TableInvalid(f'Column "{schema.label}" of the {task} site table has missing labels.')
    y = label.cast(pl.Float64).to_numpy()
    need_events = max(min_events, MIN_EVENTS_ISOTONIC if kind is CalibratorKind.ISOTONIC else 0)
    ids = scored.get_column("patient_id").cast(pl.String).to_list()
    if holdout_fraction > 0 and y.size:
        part = split_rows(ids, y, val_fraction=1e-9, test_fraction=holdout_fraction, seed=seed)
        fit_mask, hold_mask = part != "test", part == "test"
    else:
        fit_mask = hold_mask = np.ones(y.size, dtype=bool)
    n_fit, e_fit = int(fit_mask.sum()), int(y[fit_mask].sum())
    if n_fit < min_rows or e_fit < need_events or n_fit - e_fit < need_events:
        raise InsufficientData(f"{task}: recalibration needs at least {min_rows} rows and {need_events} events and "
                               f"non-events in the fitting part; got {n_fit} rows with {e_fit} events "
                               f"({int((~keep).sum())} rows abstained)")
    if y[hold_mask].sum() < 2 or (1 - y[hold_mask]).sum() < 2:
        raise InsufficientData(f"{task}: the hold-out part has too few events or non-events to report on")
    z = model.score(schema.encode_frame(scored))
    new = fit_calibrator(kind, z[fit_mask], y[fit_mask],
                         fitted_on=f"site {site or '(unnamed)'}: {n_fit} rows, {e_fit} events")
    before = model.calibrator.predict(z[hold_mask])
    after = new.predict(z[hold_mask])
    parent_metrics = read_json(parent_dir / task / METRICS_FILE)
    reference = {"auc": parent_metrics["auc"]["fusion"]["estimate"], "brier": parent_metrics["brier"]["fusion"],
                 "calibration_slope": parent_metrics["calibration"]["fusion"]["slope"],
                 "calibration_intercept": parent_metrics["calibration"]["fusion"]["intercept"],
                 "events": parent_metrics["events"], "n": parent_metrics["n"]}
    report: dict[str, Any] = {
        "task": task, "site": site, "calibrator": new.to_json(), "previous_calibrator": model.calibrator.to_json(),
        "abstained_rows": int((~keep).sum()), "fit_rows": n_fit, "fit_events": e_fit,
        "holdout_fraction": holdout_fraction, "in_sample": holdout_fraction == 0, "training_site_test": reference,
        "before": _metrics(y[hold_mask], before), "after": _metrics(y[hold_mask], after)}
    return _Fitted(task, model, new, report, y[hold_mask], before, after, scored.filter(pl.Series(hold_mask)))


def recalibrate(registry_dir: Path, version: str, tables: Mapping[str, pl.DataFrame], new_version: str, *,
                kind: CalibratorKind | str = CalibratorKind.PLATT, holdout_fraction: float = 0.5, seed: int = 0,
                site: str = "", min_rows: int = MIN_ROWS, min_events: int = MIN_EVENTS,
                out_registry: Path | None = None) -> RecalibrationResult:
    """Recalibrate the tasks in ``tables`` (task name → the site's labelled feature table) of artifact
    ``version`` into a new artifact ``new_version``. Every task passes the guard before anything is written."""
    kind = CalibratorKind(kind)
    check_version(new_version)
    if not tables:
        raise ValueError('Argument "tables" must give at least one task.')
    if not 0.0 <= holdout_fraction < 0.9:
        raise ValueError('Argument "holdout_fraction" must lie in [0, 0.9).')
    registry = Registry(registry_dir)
    parent = registry.get(version)
    for task in tables:
        registry.task_dir(version, task)
    out_root = Path(out_registry or registry_dir)
    out = out_root / new_version
    if out.exists():
        raise FileExistsError(f"artifact {new_version!r} already exists in {out_root}")
    fitted = [_fit_task(parent.path, task, frame, kind=kind, holdout_fraction=holdout_fraction, seed=seed, site=site,
                        min_rows=min_rows, min_events=min_events) for task, frame in sorted(tables.items())]

    from fusion_models.training import write_golden

    shutil.copytree(parent.path, out)
    for task in parent.manifest.tasks:
        tm = read_json(out / task / TASK_FILE)
        tm["version"] = new_version
        write_json(out / task / TASK_FILE, TaskManifest.from_json(tm).to_json())
    for f in fitted:
        task_dir = out / f.task
        write_json(task_dir / CALIBRATOR_FILE, f.calibrator.to_json())
        tm = read_json(task_dir / TASK_FILE)
        tm.update(calibrator_id=f.calibrator.id, calibrator_kind=f.calibrator.kind.value)
        write_json(task_dir / TASK_FILE, TaskManifest.from_json(tm).to_json())
        f.report.update(parent_version=version, version=new_version)
        write_golden(TaskModel(task_dir), f.holdout, f.model.schema, task_dir)
        _write_report(f.report, task_dir, f.y_hold, f.before, f.after)
    names = ", ".join(f.task for f in fitted)
    manifest = ArtifactManifest(
        version=new_version, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        tasks=parent.manifest.tasks, trained_on_synthetic_data=parent.manifest.trained_on_synthetic_data,
        description=f"{parent.manifest.description} Recalibrated ({kind.value}; tasks {names}) on site "
                    f"{site or '(unnamed)'} from {version}.", parent_version=version)
    write_json(out / MANIFEST_FILE, manifest.to_json())
    card = (out / MODEL_CARD_FILE).read_text()
    card = card.replace(f"version {version}", f"version {new_version}", 1)
    card += (f"\n## Recalibration\n\nDerived from `{version}` on site `{site or '(unnamed)'}`; only the calibrators "
             f"of the tasks below changed (models, features and explanations are the parent's).\n\n")
    for f in fitted:
        card += (f"- `{f.task}`: {kind.value}, fitted on {f.report['fit_rows']} rows ({f.report['fit_events']} "
                 f"events); before/after in `{f.task}/recalibration.md`.\n")
    (out / MODEL_CARD_FILE).write_text(card)
    return RecalibrationResult(out, {f.task: f.report for f in fitted})


def _write_report(report: dict[str, Any], task_dir: Path, y: np.ndarray, before: np.ndarray,
                  after: np.ndarray) -> None:
    write_json(task_dir / "recalibration.json", _clean(report))
    rep = EvaluationReport(task=report["task"], n=int(y.size), events=int(y.sum()))
    rep.reliability = {"before": reliability_bins(y, before), "after": reliability_bins(y, after)}
    plot_reliability(rep, task_dir / "recalibration_reliability.png", ["before", "after"],
                     f"{report['task']}: site {report['site'] or '?'} hold-out, before/after recalibration")
    ref, b, a = report["training_site_test"], report["before"], report["after"]
    scope = "the same rows it was fitted on (in-sample)" if report["in_sample"] else \
        f"a held-out {report['holdout_fraction']:.0%} of the site's patients"
    lines = [
        f"# Recalibration of `{report['parent_version']}` → `{report['version']}` (task `{report['task']}`)", "",
        f"Site: `{report['site'] or '(unnamed)'}`. New calibrator `{report['calibrator']['id']}` fitted on "
        f"{report['fit_rows']} rows ({report['fit_events']} events); measured on {scope}. "
        f"{report['abstained_rows']} rows abstained (outside the training ranges) and were left out.", "",
        "| | rows | events | AUC | Brier | cal. intercept | cal. slope | mean predicted | observed |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| training site, test split | {ref['n']} | {ref['events']} | {ref['auc']:.3f} | {ref['brier']:.4f} | "
        f"{ref['calibration_intercept']:.3f} | {ref['calibration_slope']:.3f} | | |",
    ]
    for name, m in (("this site, before", b), ("this site, after", a)):
        lines.append(f"| {name} | {m['n']} | {m['events']} | {m['auc']:.3f} | {m['brier']:.4f} | "
                     f"{m['calibration_intercept']:.3f} | {m['calibration_slope']:.3f} | {m['mean_predicted']:.4f} | "
                     f"{m['observed_rate']:.4f} |")
    lines += ["", "AUC is unchanged by recalibration (a monotone map of the same score).", "",
              "![reliability before and after](recalibration_reliability.png)", ""]
    (task_dir / "recalibration.md").write_text("\n".join(lines))


def _clean(obj: Any) -> Any:
    from fusion_models.training import _finite

    return _finite(obj)
