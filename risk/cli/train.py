"""``risk train``: train a versioned fusion-model artifact from feature tables; ``risk models list``.

    risk features build state/cohort --out state/tables
    risk train --table state/tables/patient.parquet --table state/tables/nodule.parquet \\
               --out fusion_models/artifacts --version 2026.06-synthetic-a

The task of each table is recognised from its label column (``lung_cancer`` → patient, ``malignant`` →
nodule). A ``tables.json`` next to the table (written by ``risk features build``) supplies the horizon, the data
notes of the model card and whether the data are synthetic. Bad input (missing columns, too few events, an
existing version) exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from risk.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a fusion-model artifact from feature tables", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, action="append", required=True,
                   help="feature table (parquet); repeat for the second task")
    p.add_argument("--out", type=Path, required=True, help="registry directory (artifacts go to OUT/VERSION)")
    p.add_argument("--version", required=True, help="artifact version, e.g. 2026.06-synthetic-a")
    p.add_argument("--calibrator", choices=("platt", "isotonic"), default="platt")
    p.add_argument("--horizon-years", type=float, default=None,
                   help="patient-task horizon (default: tables.json, else 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the AUC intervals")
    p.add_argument("--description", default="", help="one line for the manifest and the model card")
    p.add_argument("--synthetic", choices=("auto", "yes", "no"), default="auto",
                   help="trained on synthetic data? (auto: tables.json's 'synthetic' flag)")
    p.set_defaults(func=train)
    m = sub.add_parser("models", help="list fusion-model artifacts")
    msub = m.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = msub.add_parser("list", help="list the artifacts of a registry")
    ls.add_argument("--registry", type=Path, default=None,
                    help="registry directory (default: settings models.registry_dir)")
    ls.set_defaults(func=list_models)


def _table_info(path: Path) -> dict[str, Any]:
    info = path.parent / "tables.json"
    return json.loads(info.read_text()) if info.is_file() else {}


def train(args: argparse.Namespace) -> int:
    import polars as pl

    from fusion_models.artifacts import check_version
    from fusion_models.calibration import CalibratorKind
    from fusion_models.errors import FusionModelError
    from fusion_models.schema import Task
    from fusion_models.training import TaskConfig, summary, train_artifact

    try:
        check_version(args.version)
    except ValueError as exc:
        raise InvalidInput("--version", str(exc)) from exc
    tables: dict[Task, pl.DataFrame] = {}
    infos: list[dict[str, Any]] = []
    for path in args.table:
        if not path.is_file():
            raise InvalidInput("--table", f"{path} does not exist")
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a non-parquet file
            raise InvalidInput("--table", f"{path} is not a readable parquet file: {exc}") from exc
        task = Task.NODULE if "malignant" in frame.columns else Task.PATIENT if "lung_cancer" in frame.columns \
            else None
        if task is None:
            raise InvalidInput("--table", f"{path} has neither a 'lung_cancer' nor a 'malignant' label column")
        if task in tables:
            raise InvalidInput("--table", f"two tables for the {task.value} task")
        tables[task] = frame
        infos.append(_table_info(path))
    info = next((i for i in infos if i), {})
    horizon = args.horizon_years if args.horizon_years is not None else float(info.get("horizon_years", 6.0))
    synthetic = {"yes": True, "no": False}.get(args.synthetic, bool(info.get("synthetic", False)))
    configs = {t: TaskConfig(task=t, model_id=f"fusion-{t.value}", horizon_years=horizon,
                             calibrator=CalibratorKind(args.calibrator), seed=args.seed, n_boot=args.n_boot)
               for t in tables}
    notes = [f"{k}: {v}" for i in infos for k, v in i.items() if k in (
        "cohort", "generator", "seed", "site", "as_of", "horizon_years", "patients_in_export",
        "prevalent_cancers_excluded", "patient_rows", "patient_events", "nodule_rows", "nodule_events")]
    if synthetic:
        notes.insert(0, "Synthetic cohort (risk synth): no real patient data.")
    description = args.description or ("Fusion models trained on " + ("synthetic " if synthetic else "") + "data.")
    try:
        results = train_artifact(tables, args.out, args.version, configs, description=description,
                                 trained_on_synthetic_data=synthetic, data_notes=notes)
    except FileExistsError as exc:
        raise InvalidInput("--version", str(exc)) from exc
    except FusionModelError as exc:
        raise InvalidInput("--table", str(exc)) from exc
    print(summary(results))
    print(f"artifact written to {Path(args.out) / args.version}")
    return 0


def list_models(args: argparse.Namespace) -> int:
    from fusion_models.registry import Registry

    root = args.registry
    if root is None:
        from risk.config import load_settings

        root = load_settings().models.registry_dir
    for a in Registry(root).list():
        m = a.manifest
        print(json.dumps({"version": m.version, "created": m.created, "tasks": list(m.tasks),
                          "trained_on_synthetic_data": m.trained_on_synthetic_data,
                          "parent_version": m.parent_version, "path": str(a.path)}))
    return 0
