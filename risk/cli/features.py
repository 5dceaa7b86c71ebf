"""``risk features build COHORT_DIR --out DIR``: the fusion models' training tables from a cohort.

Writes DIR/patient.parquet, DIR/nodule.parquet and DIR/tables.json (cohort, as-of, horizon, counts). The
cohort layout and the label definitions are in risk/features/training_table.py.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from risk.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="build feature tables (fusion-model training)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    fsub = p.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    b = fsub.add_parser("build", help="cohort directory -> patient.parquet + nodule.parquet")
    b.add_argument("cohort", type=Path, metavar="COHORT_DIR")
    b.add_argument("--out", type=Path, required=True, help="output directory")
    b.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="index date (default: the cohort manifest's as_of)")
    b.add_argument("--horizon-years", type=float, default=6.0, help="patient-task horizon, 1-6 years (default 6)")
    b.set_defaults(func=build)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def build(args: argparse.Namespace) -> int:
    from risk.features.training_table import build_training_tables, write_training_tables

    if not args.cohort.is_dir():
        raise InvalidInput("COHORT_DIR", f"{args.cohort} is not a directory")
    tables = build_training_tables(args.cohort, as_of=args.as_of, horizon_years=args.horizon_years)
    paths = write_training_tables(tables, args.out)
    print(json.dumps({**tables.info, "files": {k: str(v) for k, v in paths.items()}}, indent=1))
    return 0
