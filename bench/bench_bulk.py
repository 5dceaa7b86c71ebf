"""Benchmark: Bulk NDJSON for a million patients → the EHR feature table, as a ratio to the reference.

The reference is the best robust approach of reference/performance.md §4 (``pipe_polars.py
lines_json_decode``): read every Observation line as a string column, ``str.json_decode`` four fields, group
by (patient, code) into last/mean/max/count and pivot. It runs on the same files in the same run, each
pipeline in its own fresh process (3 runs each by default, alternating), so the two see the same page cache
and the same machine load. Targets (issue 4): the feature table within 1.5× the reference's wall time, peak
memory under 4 GiB.

Measured:
- ``reference``: the performance.md script's aggregation, Observations only;
- ``observations``: the Observation stage of our feature table (like for like: the same files);
- ``reference_all``: the reference plus the same idiom (lines + json_decode of the fields we read) on every other
  file our table reads (Patient, Condition, FamilyMemberHistory, ImagingStudy): the floor for the whole table;
- ``features``: risk.features.bulk.build_feature_table over the whole export, i.e. the real feature table.

Data: ``risk synth --ndjson-only`` (about 12 Observations per patient). Usage:
    .venv/bin/python bench/bench_bulk.py [--patients 1000000] [--data DIR] [--runs 3] [--keep]
Without --data it generates the cohort into a temporary folder and deletes it afterwards (6-7 GB for 1M).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_reference(ndjson: Path) -> dict[str, object]:
    """performance.md §4 pipe_polars.py, mode lines_json_decode, verbatim in substance."""
    from reference_pipeline import observation_files, observations_long_and_wide

    files = observation_files(ndjson)
    t0 = time.perf_counter()
    long, wide = observations_long_and_wide(files)
    return {"wall_s": time.perf_counter() - t0, "rows": wide.height, "columns": wide.width, "long_rows": long.height,
            "files": len(files), "maxrss_mib": _rss_mib()}


def child_reference_all(ndjson: Path) -> dict[str, object]:
    """The reference on the Observations plus the same idiom (lines + json_decode of the fields the feature table
    reads, one trivial per-patient count so nothing is optimised away) on every other file the table reads."""
    import polars as pl
    from reference_pipeline import decode, lines

    from risk.features.bulk import CONDITION_DTYPE, FAMILY_DTYPE, IMAGING_DTYPE, PATIENT_DTYPE

    t0 = time.perf_counter()
    out = child_reference(ndjson)
    subject = {"Patient": None, "Condition": "subject", "FamilyMemberHistory": "patient", "ImagingStudy": "subject"}
    dtypes = {"Patient": PATIENT_DTYPE, "Condition": CONDITION_DTYPE, "FamilyMemberHistory": FAMILY_DTYPE,
              "ImagingStudy": IMAGING_DTYPE}
    for rtype, dtype in dtypes.items():
        files = sorted(str(p) for p in ndjson.glob(f"{rtype}*.ndjson"))
        field = subject[rtype]
        key = pl.col("id") if field is None else pl.col(field).struct.field("reference")
        frames = [decode(lines(f), dtype) for f in files]
        if frames:
            pl.concat(frames).group_by(key.alias("k")).agg(pl.len(), *(pl.col(c).is_not_null().sum()
                                                                        for c in dtype.to_schema())).collect()
    out["wall_s"] = time.perf_counter() - t0
    out["maxrss_mib"] = _rss_mib()
    return out


def child_features(ndjson: Path, as_of: date) -> dict[str, object]:
    from risk.features.bulk import build_feature_table
    from risk.sources.bulk import BulkExport

    t0 = time.perf_counter()
    result = build_feature_table(BulkExport(ndjson), as_of=as_of)
    wall = time.perf_counter() - t0
    table = result.table
    return {"wall_s": wall, "rows": table.height, "columns": table.width, "bad_lines": result.bad_lines,
            "stages_s": {k: round(v, 2) for k, v in result.timings_s.items()}, "maxrss_mib": _rss_mib(),
            "smokers": int(table["smoking_status"].is_in(["current", "former"]).sum()),
            "with_bmi": int(table["bmi"].is_not_null().sum())}


def child_observations(ndjson: Path, as_of: date) -> dict[str, object]:
    """The Observation stage exactly as build_feature_table runs it (file by file, then across files)."""
    from risk.features.bulk import OBSERVATION_DTYPE, feature_stages, latest_across_files, observation_features
    from risk.sources.bulk import BulkExport, collect_resources

    t0 = time.perf_counter()
    dtype, transform = feature_stages(as_of, reduce_per_file=True)["Observation"]
    assert dtype is OBSERVATION_DTYPE
    latest = latest_across_files([collect_resources([path], dtype, transform)
                                  for path in BulkExport(ndjson).files("Observation")])
    table = observation_features(latest.lazy().drop("sk"), as_of).collect()
    return {"wall_s": time.perf_counter() - t0, "rows": table.height, "maxrss_mib": _rss_mib()}


def run_child(mode: str, ndjson: Path, as_of: date) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--data", str(ndjson), "--as-of",
                          as_of.isoformat()], capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def generate(patients: int, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv" / "bin" / "risk"), "synth", "--ndjson-only", "--patients", str(patients),
                    "--seed", "20250630", "--out", str(out), "--quiet"], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="a `risk synth` output folder (or, with --child, its NDJSON folder)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep generated data")
    parser.add_argument("--child", choices=("reference", "reference_all", "features", "observations"))
    parser.add_argument("--as-of", type=date.fromisoformat)
    args = parser.parse_args()

    if args.child:
        fn = {"reference": lambda: child_reference(args.data),
              "reference_all": lambda: child_reference_all(args.data),
              "features": lambda: child_features(args.data, args.as_of),
              "observations": lambda: child_observations(args.data, args.as_of)}[args.child]
        print(json.dumps(fn()))
        return

    generated = None
    data = args.data
    if data is None or not (data / "manifest.json").is_file():
        data = data or Path(tempfile.mkdtemp(prefix="bench_bulk_", dir=os.environ.get("BENCH_DIR", "/tmp")))
        generated = data
        print(f"generating {args.patients:,} patients with risk synth --ndjson-only into {data} ...", flush=True)
        print(f"  generated in {generate(args.patients, data):.0f} s", flush=True)
    try:
        manifest = json.loads((data / "manifest.json").read_text())
        as_of = date.fromisoformat(manifest["as_of"])
        ndjson = data / "fhir" / "ndjson"
        sizes = {p.name: p.stat().st_size for p in ndjson.glob("*.ndjson")}
        obs_lines = sum(1 for p in ndjson.glob("Observation*.ndjson") for _ in open(p, "rb"))  # noqa: SIM115
        print(f"data: {manifest['n_patients']:,} patients, {obs_lines:,} Observation lines, "
              f"{sum(sizes.values()) / 1e9:.2f} GB NDJSON in {len(sizes)} files; as of {as_of}")
        modes = ("reference", "observations", "features", "reference_all")
        runs: dict[str, list[dict[str, object]]] = {m: [] for m in modes}
        for i in range(args.runs):
            order = modes if i % 2 == 0 else tuple(reversed(modes))
            for mode in order:
                result = run_child(mode, ndjson, as_of)
                runs[mode].append(result)
                print(f"  run {i + 1} {mode:<12} {json.dumps(result)}", flush=True)
        med = {m: statistics.median(float(r["wall_s"]) for r in rs) for m, rs in runs.items()}  # type: ignore[arg-type]
        rss = {m: max(float(r["maxrss_mib"]) for r in rs) for m, rs in runs.items()}  # type: ignore[arg-type]
        print()
        print(f"{'pipeline':<44} {'wall s (median)':>15} {'min-max':>15} {'peak RSS':>10} {'× reference':>12}")
        for mode, label in (("reference", "reference (§4 script): Observations"),
                            ("observations", "ours, Observation stage (same files)"),
                            ("reference_all", "reference idiom over every file ours reads"),
                            ("features", "ours, whole feature table")):
            walls = [float(r["wall_s"]) for r in runs[mode]]  # type: ignore[arg-type]
            print(f"{label:<44} {med[mode]:>15.2f} {min(walls):>7.2f}-{max(walls):<7.2f} "
                  f"{rss[mode] / 1024:>8.2f}GiB {med[mode] / med['reference']:>12.2f}")
        like = med["observations"] / med["reference"]
        whole = med["features"] / med["reference_all"]
        print(f"\nratios: Observation stage / reference = {like:.2f}×; whole table / reference idiom on the same "
              f"files = {whole:.2f}×; whole table / Observation-only reference = "
              f"{med['features'] / med['reference']:.2f}×  (target ≤ 1.5×)")
        print(f"peak memory of the whole table: {rss['features'] / 1024:.2f} GiB (target < 4 GiB: "
              f"{'met' if rss['features'] < 4096 else 'NOT met'})")
    finally:
        if generated is not None and not args.keep:
            shutil.rmtree(generated, ignore_errors=True)
            print(f"deleted {generated}")


if __name__ == "__main__":
    main()
