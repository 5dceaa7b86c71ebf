"""``risk synth``: write a synthetic cohort (FHIR bundles + NDJSON, DICOM CT + vendor-AI SR, parquet truth)."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

from risk.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    from risk.synth.defaults import CT_MATRICES, DEFAULT_AS_OF, DEFAULT_DICOMWEB_URL, SITE_NAMES, default_workers

    p = sub.add_parser(
        "synth", help="generate a synthetic cohort (labelled synthetic everywhere)",
        description="Generate a deterministic synthetic lung-cancer screening cohort. Layout: OUT/manifest.json, "
                    "OUT/fhir/bundles/<patient>.json, OUT/fhir/ndjson/<Type>.ndjson, "
                    "OUT/dicom/<Study>/<Series>/<SOP>.dcm, OUT/truth/*.parquet. Model: risk/synth/README.md.",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (created; must not hold output)")
    p.add_argument("--patients", required=True, type=int, help="number of patients")
    p.add_argument("--seed", required=True, type=int, help="random seed (0 to 4294967295)")
    p.add_argument("--site", default="site-a", choices=SITE_NAMES, help="site profile (default site-a)")
    p.add_argument("--as-of", default=DEFAULT_AS_OF.isoformat(), metavar="YYYY-MM-DD",
                   help=f"the cohort's 'today': every date is relative to it (default {DEFAULT_AS_OF})")
    p.add_argument("--ndjson-only", action="store_true",
                   help="FHIR NDJSON and truth only (no bundles, no DICOM): the million-patient mode")
    p.add_argument("--no-dicom", action="store_true", help="skip the DICOM CT series and SRs")
    p.add_argument("--ct-matrix", type=int, default=64, choices=CT_MATRICES,
                   help="CT matrix: 64 (tests), 128, 512 (benchmarks); default 64")
    p.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: CPUs, ≤ 8)")
    p.add_argument("--dicomweb-url", default=DEFAULT_DICOMWEB_URL,
                   help=f"DICOMweb base URL written into the FHIR Endpoint (default {DEFAULT_DICOMWEB_URL})")
    p.add_argument("--overwrite", action="store_true", help="replace earlier generator output in --out")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from risk.synth.pipeline import SynthOptions, generate

    try:
        as_of = date.fromisoformat(args.as_of)
    except ValueError:
        raise InvalidInput("--as-of", f"must be a date YYYY-MM-DD, got {args.as_of!r}") from None
    options = SynthOptions(
        out=args.out, patients=args.patients, seed=args.seed, site=args.site, as_of=as_of,
        ndjson_only=args.ndjson_only, dicom=not args.no_dicom, ct_matrix=args.ct_matrix, workers=args.workers,
        dicomweb_url=args.dicomweb_url, overwrite=args.overwrite,
    )
    started = time.perf_counter()
    manifest = generate(options, progress=not args.quiet)
    counts = manifest["counts"]
    assert isinstance(counts, dict)
    resources = ", ".join(f"{k} {v}" for k, v in sorted(counts["resources"].items()))
    print(f"risk synth: {options.patients} synthetic patients ({options.site}, seed {options.seed}) in "
          f"{time.perf_counter() - started:.1f} s -> {options.out}")
    print(f"  FHIR: {resources}")
    print(f"  studies {counts['studies']}, nodule observations {counts['nodule_observations']}, "
          f"lung cancers (6 y) {counts['lung_cancers_6y']}, CT instances {counts['ct_instances']}, "
          f"SRs {counts['sr_instances']}")
    return 0
