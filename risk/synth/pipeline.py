"""Orchestration of ``risk synth``: jobs over patient ranges, worker processes, ordered writers, manifest.

A job is a range of patients inside one simulation chunk (risk.synth.model.CHUNK_PATIENTS). Workers simulate the
chunk, build and serialise FHIR (orjson), write bundles and DICOM themselves (one file per object, so nothing is
shared) and send back NDJSON bytes and truth frames; the parent appends those in job order. The outputs are
therefore byte-identical for any ``--workers``.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import polars as pl

from risk.errors import InvalidInput
from risk.synth import fhir as F
from risk.synth import model as M
from risk.synth import phantom, uids
from risk.synth.defaults import DEFAULT_AS_OF, DEFAULT_DICOMWEB_URL
from risk.synth.ndjson import LINES_PER_FILE, NdjsonWriter
from risk.synth.sites import site_profile
from risk.synth.truth import TruthWriter, truth_frames

GENERATOR_VERSION = "risk.synth 1.0.0"
NOTICE = "Synthetic data - not for clinical use"
MAX_PATIENTS = 20_000_000
DICOM_JOB_PATIENTS = 8
"""Patients per job when DICOM is written (DICOM dominates; small jobs spread it over the workers)."""
OUTPUT_DIRS = ("fhir", "dicom", "truth")


@dataclass(frozen=True, slots=True)
class SynthOptions:
    out: Path
    patients: int
    seed: int
    site: str = "site-a"
    as_of: date = DEFAULT_AS_OF
    ndjson_only: bool = False
    dicom: bool = True
    ct_matrix: int = 64
    workers: int = 1
    dicomweb_url: str = DEFAULT_DICOMWEB_URL
    overwrite: bool = False
    lines_per_file: int = LINES_PER_FILE

    @property
    def write_dicom(self) -> bool:
        return self.dicom and not self.ndjson_only

    @property
    def write_bundles(self) -> bool:
        return not self.ndjson_only

    def validate(self) -> None:
        """Raise :class:`InvalidInput` naming the offending option."""
        if not 1 <= self.patients <= MAX_PATIENTS:
            raise InvalidInput("--patients", f"must be between 1 and {MAX_PATIENTS}, got {self.patients}")
        if not 0 <= self.seed <= uids.MAX_SEED:
            raise InvalidInput("--seed", f"must be between 0 and {uids.MAX_SEED}, got {self.seed}")
        site_profile(self.site)
        if self.ct_matrix not in phantom.GEOMETRIES:
            raise InvalidInput("--ct-matrix", f"must be one of {sorted(phantom.GEOMETRIES)}, got {self.ct_matrix}")
        if not 1 <= self.workers <= 256:
            raise InvalidInput("--workers", f"must be between 1 and 256, got {self.workers}")
        if not self.dicomweb_url.startswith(("http://", "https://")):
            raise InvalidInput("--dicomweb-url", f"must be an http(s) URL, got {self.dicomweb_url!r}")
        if self.out.exists() and not self.out.is_dir():
            raise InvalidInput("--out", f"{self.out} exists and is not a directory")
        if self.out.is_dir() and not self.overwrite:
            clash = [p.name for p in self.out.iterdir() if p.name in (*OUTPUT_DIRS, "manifest.json")]
            if clash:
                raise InvalidInput("--out", f"{self.out} already holds generator output ({', '.join(sorted(clash))}); "
                                            "choose an empty directory or pass --overwrite")


@dataclass(frozen=True, slots=True)
class _Job:
    options: SynthOptions
    chunk: int
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class _JobResult:
    ndjson: dict[str, tuple[bytes, int]]
    truth: dict[str, pl.DataFrame]
    counts: dict[str, int]


def _jobs(options: SynthOptions) -> Iterator[_Job]:
    step = DICOM_JOB_PATIENTS if options.write_dicom else M.CHUNK_PATIENTS
    for chunk in range((options.patients + M.CHUNK_PATIENTS - 1) // M.CHUNK_PATIENTS):
        size = min(M.CHUNK_PATIENTS, options.patients - chunk * M.CHUNK_PATIENTS)
        for start in range(0, size, step):
            yield _Job(options, chunk, start, min(size, start + step))


def _run_job(job: _Job) -> _JobResult:
    o = job.options
    site = site_profile(o.site)
    cohort = M.simulate_chunk(o.seed, site, job.chunk, o.as_of).subset(job.start, job.stop)
    builder = F.PatientResources(cohort, ct_matrix=o.ct_matrix)
    lines: dict[str, list[bytes]] = {}
    counts: Counter[str] = Counter()
    bundle_dir = o.out / "fhir" / "bundles"
    endpoint_entry = _entry(F.endpoint(site, o.dicomweb_url))
    for i in range(builder.n):
        resources = builder.resources(i)
        for r in resources:
            lines.setdefault(r["resourceType"], []).append(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE))
        if o.write_bundles:
            bundle = {"resourceType": "Bundle", "type": "transaction", "meta": F.META,
                      "entry": [endpoint_entry, *(_entry(r) for r in resources)]}
            (bundle_dir / f"{builder.patient_id(i)}.json").write_bytes(
                orjson.dumps(bundle, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    if o.write_dicom:
        counts.update(_write_dicom(cohort, o))
    return _JobResult(
        ndjson={k: (b"".join(v), len(v)) for k, v in lines.items()},
        truth=truth_frames(cohort, o.ct_matrix),
        counts=dict(counts),
    )


def _entry(resource: dict[str, object]) -> dict[str, object]:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def _write_dicom(cohort: M.Cohort, o: SynthOptions) -> Counter[str]:
    from risk.synth.dicom import write_ct_series
    from risk.synth.sr import build_sr
    from risk.synth.studies import study_contexts

    geometry = phantom.GEOMETRIES[o.ct_matrix]
    dicom_dir = o.out / "dicom"
    counts: Counter[str] = Counter()
    for i in range(len(cohort.patients)):
        for ctx in study_contexts(cohort, i):
            evidence = write_ct_series(ctx, geometry, dicom_dir)
            sr = build_sr(ctx, evidence, geometry, cohort.site.ai)
            sr_dir = dicom_dir / ctx.study_uid / ctx.sr_series_uid
            sr_dir.mkdir(parents=True, exist_ok=True)
            sr.save_as(sr_dir / f"{ctx.sr_sop_uid}.dcm", enforce_file_format=True)
            counts["ct_instances"] += len(evidence)
            counts["sr_instances"] += 1
            counts["sr_measurement_groups"] += sum(n.detected for n in ctx.nodules)
    return counts


def generate(options: SynthOptions, *, progress: bool = False) -> dict[str, object]:
    """Write the cohort described by ``options``; returns the manifest (also written to OUT/manifest.json)."""
    options.validate()
    out = options.out
    if options.overwrite:
        for name in OUTPUT_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "manifest.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if options.write_bundles:
        (out / "fhir" / "bundles").mkdir(parents=True, exist_ok=True)
    if options.write_dicom:
        (out / "dicom").mkdir(parents=True, exist_ok=True)
    site = site_profile(options.site)
    ndjson = NdjsonWriter(out / "fhir" / "ndjson", options.lines_per_file)
    ndjson.write("Endpoint", orjson.dumps(F.endpoint(site, options.dicomweb_url), option=orjson.OPT_APPEND_NEWLINE),
                 1)
    truth = TruthWriter(out / "truth")
    counts: Counter[str] = Counter()
    jobs = list(_jobs(options))
    workers = min(options.workers, len(jobs))
    done_patients = 0
    for result, job in zip(_results(jobs, workers), jobs, strict=True):
        for resource_type, (data, n_lines) in result.ndjson.items():
            ndjson.write(resource_type, data, n_lines)
        truth.write(result.truth)
        counts.update(result.counts)
        done_patients += job.stop - job.start
        if progress:
            print(f"\rrisk synth: {done_patients}/{options.patients} patients", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    files = ndjson.close()
    rows = truth.close()
    manifest: dict[str, object] = {
        "seed": options.seed,
        "n_patients": options.patients,
        "site": options.site,
        "as_of": options.as_of.isoformat(),
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "notice": NOTICE,
        "outputs": {"fhir_bundles": options.write_bundles, "fhir_ndjson": True, "dicom": options.write_dicom,
                    "truth": True},
        "ct_matrix": options.ct_matrix,
        "dicomweb_url": options.dicomweb_url,
        "counts": {
            "resources": {k: v["lines"] for k, v in files.items()},
            "bundles": options.patients if options.write_bundles else 0,
            "studies": rows["studies"],
            "nodule_observations": rows["nodules"],
            "lung_cancers_6y": None,
            "ct_instances": counts.get("ct_instances", 0),
            "sr_instances": counts.get("sr_instances", 0),
            "sr_measurement_groups": counts.get("sr_measurement_groups", 0),
            "truth_rows": rows,
        },
        "ndjson_files": {k: v["files"] for k, v in files.items()},
        "documentation": "risk/synth/README.md",
    }
    cancers = pl.scan_parquet(out / "truth" / "patients.parquet").select(pl.col("lung_cancer").sum()).collect().item()
    manifest["counts"]["lung_cancers_6y"] = int(cancers)  # type: ignore[index]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _results(jobs: list[_Job], workers: int) -> Iterator[_JobResult]:
    if workers <= 1:
        for job in jobs:
            yield _run_job(job)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(_run_job, jobs, chunksize=1)


