"""Benchmark: fusion-model prediction, as ratios to a raw XGBoost booster on the same input (issue 6).

1. **One patient with explanation**: ``predictor.predict_one(row)`` (validation, range checks, encoding, TreeSHAP
   contributions of the booster, occlusion of the frozen network when the blend uses it, calibration, interval,
   worded factors) against ``booster.inplace_predict(x)`` of the *same artifact's* booster on the same encoded
   row. Target: median and p99 within 5×. The two loops alternate in rounds so both see the same machine load.
2. **Batch throughput**: ``predictor.predict_frame(table)`` (polars table → encoding → vectorised abstention →
   booster + network + calibration) and ``predict_matrix(X)`` (already encoded) in rows/s, against
   ``booster.inplace_predict(X)`` on the same matrix. Target: ≥ 0.5×.

Both sides use one thread (``nthread=1``, ``torch.set_num_threads(1)``): one worker per core, as
shared/reference/performance.md §3 recommends for single rows. Floors measured there on this machine class:
~200 µs per single-row ``inplace_predict`` (300 trees of depth 6), 438k rows/s batched on 2 threads, frozen
TorchScript head 21 µs per row.

Usage:
    .venv/bin/python bench/bench_predict.py [--registry fusion_models/artifacts] [--version V] [--task patient]
                                            [--table FEATURES.parquet] [--rows 200000] [--rounds 7]
Without --table the batch is the artifact's golden rows repeated to --rows rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from fusion_models.registry import SHIPPED_REGISTRY, Registry  # noqa: E402
from fusion_models.runtime import load_predictor  # noqa: E402


def _loop(fn: Any, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _stats(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1e6
    return {"median_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)), "n": len(samples)}


def single_row(predictor: Any, rows: list[dict[str, Any]], rounds: int, seconds: float) -> dict[str, Any]:
    tm = predictor.task_model
    booster = tm.xgb.booster if tm.xgb is not None else None
    if booster is None:
        raise SystemExit("the artifact's blend does not use XGBoost: there is no booster to compare with")
    encoded = [tm.encode_checked(r)[0] for r in rows]
    pairs = [(r, x) for r, x in zip(rows, encoded, strict=True) if x is not None]
    for r, x in pairs:  # warm-up (TorchScript profiling runs, caches)
        for _ in range(50):
            predictor.predict_one(r)
            booster.inplace_predict(x)
    ours: list[float] = []
    raw: list[float] = []
    for i in range(rounds):
        r, x = pairs[i % len(pairs)]
        raw += _loop(lambda x=x: booster.inplace_predict(x), seconds)
        ours += _loop(lambda r=r: predictor.predict_one(r), seconds)
    o, b = _stats(ours), _stats(raw)
    return {"predict_one_with_explanation": o, "raw_inplace_predict": b,
            "ratio_median": o["median_us"] / b["median_us"], "ratio_p99": o["p99_us"] / b["p99_us"],
            "target": "<= 5x", "trees": booster.num_boosted_rounds(), "xgb_weight": tm.blend.xgb_weight,
            "network_used": tm.net is not None}


def batch(predictor: Any, frame: pl.DataFrame, runs: int) -> dict[str, Any]:
    tm = predictor.task_model
    x = predictor.schema.encode_frame(frame)
    booster = tm.xgb.booster
    booster.inplace_predict(x[:1000])
    predictor.predict_frame(frame.head(1000))
    timings: dict[str, list[float]] = {"raw": [], "frame": [], "matrix": []}
    for _ in range(runs):  # alternate so drifting machine load hits all three alike
        for name, fn in (("raw", lambda: booster.inplace_predict(x)), ("frame", lambda: predictor.predict_frame(frame)),
                         ("matrix", lambda: predictor.predict_matrix(x))):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    rate = {k: frame.height / statistics.median(v) for k, v in timings.items()}
    return {"rows": frame.height, "raw_inplace_predict_rows_per_s": rate["raw"],
            "predict_frame_rows_per_s": rate["frame"], "predict_matrix_rows_per_s": rate["matrix"],
            "ratio_frame": rate["frame"] / rate["raw"], "ratio_matrix": rate["matrix"] / rate["raw"],
            "target": ">= 0.5x"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", type=Path, default=SHIPPED_REGISTRY)
    ap.add_argument("--version", default=None, help="default: the newest artifact without a parent")
    ap.add_argument("--task", choices=("patient", "nodule"), default="patient")
    ap.add_argument("--table", type=Path, default=None, help="feature table for the batch (parquet)")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5, help="seconds per single-row loop")
    ap.add_argument("--runs", type=int, default=5, help="batch repetitions")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    registry = Registry(args.registry)
    version = args.version or next(a.version for a in reversed(registry.list()) if a.manifest.parent_version is None)
    predictor = load_predictor(args.registry, version, task=args.task)
    golden = json.loads((registry.get(version).path / args.task / "golden.json").read_text())
    rows = [c["features"] for c in golden["cases"] if c["probability"] is not None]
    if args.table is not None:
        frame = pl.read_parquet(args.table, columns=list(predictor.schema.names)).head(args.rows)
    else:
        base = pl.DataFrame(rows, schema={n: _dtype(predictor, n) for n in predictor.schema.names})
        frame = pl.concat([base] * (args.rows // base.height + 1)).head(args.rows)
    result = {"version": version, "task": args.task,
              "single_row": single_row(predictor, rows, args.rounds, args.seconds),
              "batch": batch(predictor, frame, args.runs)}
    print(json.dumps(result, indent=1))
    s, b = result["single_row"], result["batch"]
    print(f"single row with explanation: median {s['predict_one_with_explanation']['median_us']:.0f} µs "
          f"({s['ratio_median']:.2f}x raw inplace_predict {s['raw_inplace_predict']['median_us']:.0f} µs), "
          f"p99 {s['predict_one_with_explanation']['p99_us']:.0f} µs ({s['ratio_p99']:.2f}x) [target <= 5x]")
    print(f"batch: predict_frame {b['predict_frame_rows_per_s']:,.0f} rows/s ({b['ratio_frame']:.2f}x raw "
          f"{b['raw_inplace_predict_rows_per_s']:,.0f} rows/s), predict_matrix {b['ratio_matrix']:.2f}x "
          f"[target >= 0.5x]")
    return 0


def _dtype(predictor: Any, name: str) -> pl.DataType:
    kind = predictor.schema[name].kind.value
    return pl.String() if kind == "categorical" else pl.Boolean() if kind == "binary" else pl.Float64()


if __name__ == "__main__":
    sys.exit(main())
