"""``risk recalibrate``: refit a shipped artifact's calibrator on a site's labelled outcomes.

    risk features build state/site-b --out state/tables-b
    risk recalibrate --registry fusion_models/artifacts --version 2026.1-synthetic \\
                     --table state/tables-b/patient.parquet --table state/tables-b/nodule.parquet \\
                     --new-version 2026.1-synthetic+site-b --site site-b

The task of each table is recognised from its label column, as in ``risk train``. Writes a new artifact
version (the parent's models with the new calibrators) and, in each recalibrated task's directory,
recalibration.md / recalibration.json / recalibration_reliability.png: the training site's test metrics, this
site before recalibration and after, on a held-out share of the site's patients (``--holdout-fraction``;
0 reports in-sample). Fewer rows or events than the minimum-sample guard → exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from risk.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recalibrate", help="recalibrate a fusion-model artifact on a site's outcomes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", type=Path, required=True, help="registry holding the parent artifact")
    p.add_argument("--version", required=True, help="parent artifact version")
    p.add_argument("--table", type=Path, action="append", required=True,
                   help="the site's labelled feature table (parquet); repeat for the second task")
    p.add_argument("--new-version", required=True, help="version of the recalibrated artifact")
    p.add_argument("--out", type=Path, default=None, help="registry for the new artifact (default: --registry)")
    p.add_argument("--calibrator", choices=("platt", "isotonic"), default="platt")
    p.add_argument("--holdout-fraction", type=float, default=0.5,
                   help="share of patients held out to report before/after (default 0.5)")
    p.add_argument("--site", default="", help="site name for the report")
    p.add_argument("--min-rows", type=int, default=200)
    p.add_argument("--min-events", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from fusion_models.errors import ArtifactNotFound, FusionModelError
    from fusion_models.recalibration import recalibrate

    tables: dict[str, pl.DataFrame] = {}
    for path in args.table:
        if not path.is_file():
            raise InvalidInput("--table", f"{path} does not exist")
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a non-parquet file
            raise InvalidInput("--table", f"{path} is not a readable parquet file: {exc}") from exc
        task = "nodule" if "malignant" in frame.columns else "patient" if "lung_cancer" in frame.columns else None
        if task is None or task in tables:
            raise InvalidInput("--table", f"{path}: no label column, or a second table for one task")
        tables[task] = frame
    try:
        result = recalibrate(args.registry, args.version, tables, args.new_version, kind=args.calibrator,
                             holdout_fraction=args.holdout_fraction, seed=args.seed, site=args.site,
                             min_rows=args.min_rows, min_events=args.min_events, out_registry=args.out)
    except ArtifactNotFound as exc:
        raise InvalidInput("--version", str(exc)) from exc
    except FileExistsError as exc:
        raise InvalidInput("--new-version", str(exc)) from exc
    except FusionModelError as exc:
        raise InvalidInput("--table", str(exc)) from exc
    keys = ("auc", "brier", "calibration_intercept", "calibration_slope", "mean_predicted", "observed_rate")
    summary = {task: {"fit_rows": r["fit_rows"], "fit_events": r["fit_events"],
                      "training_site_test": r["training_site_test"],
                      "before": {k: r["before"][k] for k in keys}, "after": {k: r["after"][k] for k in keys}}
               for task, r in result.reports.items()}
    print(json.dumps({"version": args.new_version, "parent_version": args.version, "tasks": summary,
                      "directory": str(result.directory)}, indent=1))
    return 0
