"""``python -m bench``: run the benchmarks, each in its own process, one after another.

    .venv/bin/python -m bench                 # the quick ones: snapshot, sr, predict, cds (a few minutes)
    .venv/bin/python -m bench --all           # plus bulk and population on 1,000,000 synthetic patients
                                              # (one shared `risk synth --ndjson-only` cohort, ~17 GB, ~1 h)
    .venv/bin/python -m bench cds predict     # the named ones

Each benchmark prints its figures as ratios to a floor measured in the same run (see each file's docstring);
``cds`` needs the local stack (``deploy/local/stack.sh up``). The exit status is the number of benchmarks that
failed to run (a missed target is printed, not an error).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = ("snapshot", "sr", "predict", "cds")
LARGE = ("bulk", "population")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(QUICK + LARGE)} (default: {', '.join(QUICK)})")
    parser.add_argument("--all", action="store_true", help="every benchmark, the million-patient ones included")
    parser.add_argument("--patients", type=int, default=1_000_000, help="cohort size to generate (bulk, population)")
    parser.add_argument("--data", type=Path, help="an existing `risk synth --ndjson-only` cohort for bulk/population")
    args = parser.parse_args()
    names = list(QUICK + LARGE) if args.all else (args.names or list(QUICK))
    unknown = sorted(set(names) - set(QUICK + LARGE))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(QUICK + LARGE)}")

    cohort_tmp: Path | None = None
    data = args.data
    if data is None and any(n in LARGE for n in names):
        cohort_tmp = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
        data = cohort_tmp / "cohort"
        print(f"bench: generating {args.patients:,} patients into {data} (risk synth --ndjson-only)", flush=True)
        subprocess.run([sys.executable, "-m", "risk", "synth", "--out", str(data), "--patients", str(args.patients),
                        "--seed", "2026", "--ndjson-only", "--quiet"], check=True, cwd=HERE.parent)
    failed = []
    try:
        for name in names:
            cmd = [sys.executable, str(HERE / f"bench_{name}.py")]
            if name in LARGE:
                cmd += ["--data", str(data)]
            print(f"\n=== bench {name}: {' '.join(cmd[1:])}", flush=True)
            if subprocess.run(cmd, cwd=HERE.parent, check=False).returncode != 0:
                failed.append(name)
    finally:
        if cohort_tmp is not None:
            shutil.rmtree(cohort_tmp, ignore_errors=True)
    if failed:
        print(f"\nbench: failed to run: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
