"""One population run, end to end: inputs → scores → the store → the closed loop → the run record.

1. A run record is written first (``running``), so a failed run is visible with its error.
2. Inputs: a folder of NDJSON (``--ndjson DIR``), or a Bulk ``$export`` from ``fhir.base_url`` with a SMART Backend
   Services token (risk.population.bulk_export), downloaded to ``population.work_dir/<run id>/``.
3. The **inputs digest** (SHA-256) covers every input file's relative name and size plus, by default, the SHA-256 of
   its first and last MiB (a fingerprint that reads ~2 MiB per file whatever its size); ``full_digest`` hashes
   every byte instead. The export manifest's ``transactionTime`` is part of it when there is one.
4. Optionally (``population.sync_pacs``) the SRs of CT studies missing from the imaging-feature cache are parsed
   from the PACS first (risk.imaging.pipeline), so new results reach this run.
5. Scoring (risk.population.scoring) on the configured engine, with the stored per-patient nodule results whose
   input digest is unchanged, and the fusion model when ``models.version`` names one.
6. One transaction: the nodule categories are replaced (SQLite: the per-patient results and exam rows too), the
   nodule cache updated, the worklist items merged (risk.population.items; PostgreSQL: the item table is locked
   against concurrent coordinator writes for the merge), each state change recorded as an event, and the run
   record completed with counts, per-site dashboard figures (risk.population.dashboard), model versions and
   timings. On PostgreSQL the per-patient results (then their screening uptake per site, for the run's figures)
   and the registry's exam rows are copied meanwhile on connections of their own (three backends at work), in
   transactions that commit right after this one and are rolled back if it fails; readers of those rows wait for
   them.
"""

from __future__ import annotations

import hashlib
import logging
import resource
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from risk.assess.policy import DEFAULT_POLICY
from risk.config import Settings
from risk.errors import ConfigurationError, InvalidInput
from risk.population import dashboard, items, store_io
from risk.population.bulk_export import MANIFEST_FILE, BulkExportClient, ExportRequest
from risk.population.engines import open_engine
from risk.population.nodules import CacheObservations, ObservationSource
from risk.population.scoring import PopulationScores, ScoringOptions, score_population
from risk.sources.bulk import BulkExport
from risk.store.audit import record_audit
from risk.store.db import Database
from risk.store.population import PopulationNoduleCache, PopulationRun, WorklistItem

log = logging.getLogger(__name__)

HEAD_TAIL_BYTES = 1 << 20
STAGES = ("patients and studies", "feature table", "orders", "nodules", "risks and eligibility", "stored")


@dataclass(slots=True)
class RunOptions:
    as_of: date
    folder: Path | None = None
    export: ExportRequest | None = None
    engine: str | None = None
    triggered_by: str = "cli"
    progress: bool = False
    full_digest: bool = False
    sync_pacs: bool | None = None


@dataclass(slots=True)
class RunSummary:
    run_id: str
    status: str
    as_of: date
    source: str
    inputs_digest: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    folder: Path | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)


def inputs_digest(folder: Path, *, full: bool = False) -> tuple[str, dict[str, Any]]:
    """(digest, description) of every file under ``folder`` (see the module docstring)."""
    h = hashlib.sha256()
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part")):
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        fh = hashlib.sha256()
        with path.open("rb") as f:
            if full or size <= 2 * HEAD_TAIL_BYTES:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    fh.update(chunk)
            else:
                fh.update(f.read(HEAD_TAIL_BYTES))
                f.seek(size - HEAD_TAIL_BYTES)
                fh.update(f.read(HEAD_TAIL_BYTES))
        digest = fh.hexdigest()
        h.update(f"{rel}\t{size}\t{digest}\n".encode())
        files.append({"file": rel, "bytes": size, "sha256" if full or size <= 2 * HEAD_TAIL_BYTES
                      else "sha256_head_tail": digest})
    manifest = folder / MANIFEST_FILE
    transaction_time = None
    if manifest.is_file():
        try:
            transaction_time = orjson.loads(manifest.read_bytes()).get("transactionTime")
        except (orjson.JSONDecodeError, AttributeError):
            transaction_time = None
    if transaction_time:
        h.update(f"transactionTime\t{transaction_time}\n".encode())
    return h.hexdigest(), {"files": files, "transaction_time": transaction_time,
                           "digest_mode": "full" if full else "head-tail"}


def _prune_exports(work_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest run folders (named by run id) in ``work_dir``."""
    runs = []
    for p in work_dir.iterdir() if work_dir.is_dir() else ():
        try:
            uuid.UUID(p.name)
        except ValueError:
            continue
        if p.is_dir():
            runs.append(p)
    for old in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("deleted the old export %s", old)


def _export(settings: Settings, request: ExportRequest, dest: Path, progress: bool) -> tuple[str, dict[str, Any]]:
    if settings.fhir.base_url is None:
        raise ConfigurationError("RISK_FHIR__BASE_URL", "is not set: give --ndjson DIR or configure the FHIR server")
    from risk.loading.backend_auth import BackendServicesAuth

    token = BackendServicesAuth.from_settings(settings.smart_backend) \
        if BackendServicesAuth.configured(settings.smart_backend) else None
    pop = settings.population
    with BulkExportClient(str(settings.fhir.base_url), token=token, timeout_s=pop.export_timeout_s,
                          poll_max_s=pop.export_poll_max_s, max_wait_s=pop.export_max_wait_s,
                          token_origins=pop.export_token_origins,
                          progress=(lambda m: log.info("export: %s", m)) if progress else None) as client:
        result = client.export(request, dest)
    return str(settings.fhir.base_url), {"request": result.manifest.request, "polls": result.polls,
                                         "bytes": result.bytes_downloaded, "seconds": result.seconds,
                                         "error_outcomes": len(result.error_outcomes),
                                         "transaction_time": result.manifest.transaction_time}


def load_predictor(settings: Settings) -> Any:
    if settings.models.version is None:
        return None
    from fusion_models.runtime import load_predictor as load

    return load(settings.models.registry_dir, settings.models.version, "patient")


def _nodule_cache(db: Database) -> dict[str, tuple[str, dict[str, Any]]]:
    with db.session() as s:
        return {pid: (digest, result) for pid, digest, result in s.execute(
            select(PopulationNoduleCache.patient_id, PopulationNoduleCache.input_digest,
                   PopulationNoduleCache.result))}


def sync_imaging(settings: Settings, db: Database, folder: Path, as_of: date) -> dict[str, int]:
    """Parse the SRs of CT studies (with an SR series) that the imaging-feature cache lacks, patient by patient."""
    from risk.deadline import Deadline
    from risk.imaging.cache import ImagingFeatureCache
    from risk.imaging.pipeline import load_imaging
    from risk.population.frames import read_extra
    from risk.sources.dicomweb import open_dicom_source
    from risk.store.imaging_cache import ImagingFeatureCacheRow

    source = open_dicom_source(settings.dicomweb)
    if source is None:
        raise ConfigurationError("RISK_DICOMWEB__URL", "sync_pacs needs a PACS (dicomweb.url or dicomweb.file_dir)")
    extra = read_extra(BulkExport(folder), as_of=as_of, site_systems=settings.population.site_systems)
    with db.session() as s:
        cached = set(s.scalars(select(ImagingFeatureCacheRow.study_instance_uid)))
    todo = extra.studies.filter(pl.col("is_ct") & pl.col("has_sr") & ~pl.col("uid").is_in(list(cached)))
    mrns = dict(extra.patients.select("pid", "mrn").iter_rows())
    cache = ImagingFeatureCache(db)
    done = failed = 0
    for (pid,), group in todo.group_by(["pid"], maintain_order=True):
        mrn = mrns.get(pid)
        try:
            load_imaging(source, cache, dicom_patient_ids=[mrn] if mrn else [], study_uids=group["uid"].to_list(),
                         as_of=as_of, deadline=Deadline(120.0))
            done += 1
        except Exception:  # one patient's PACS trouble does not stop the run
            log.exception("imaging sync failed for %s", pid)
            failed += 1
    return {"patients_synced": done, "patients_failed": failed, "studies_missing": todo.height}


def run_population(settings: Settings, db: Database, options: RunOptions, *, predictor: Any = None,
                   observations: ObservationSource | None = None) -> RunSummary:
    """Run once (see the module docstring). Raises after recording a failed run."""
    run_id = str(uuid.uuid4())
    started = time.perf_counter()
    now = datetime.now(UTC)
    if options.folder is None and options.export is None:
        options.export = ExportRequest(types=settings.population.export_types)
    if options.folder is not None and not Path(options.folder).is_dir():
        raise InvalidInput("--ndjson", f"{options.folder} is not a folder")
    source_text = str(options.folder) if options.folder is not None else str(settings.fhir.base_url or "")
    with db.session() as s:
        s.add(PopulationRun(id=run_id, started_at=now, as_of=options.as_of, status="running",
                            engine=options.engine or settings.population.engine, source=source_text[:1024],
                            triggered_by=options.triggered_by[:256]))
    summary = RunSummary(run_id=run_id, status="running", as_of=options.as_of, source=source_text)
    try:
        _run(settings, db, options, summary, predictor=predictor, observations=observations)
    except BaseException as exc:
        with db.session() as s:
            s.execute(update(PopulationRun).where(PopulationRun.id == run_id).values(
                status="failed", finished_at=datetime.now(UTC), duration_s=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"[:8000]))
        raise
    summary.duration_s = time.perf_counter() - started
    summary.status = "complete"
    if options.folder is None:
        _prune_exports(Path(settings.population.work_dir), settings.population.keep_exports)
    with db.session() as s:
        s.execute(update(PopulationRun).where(PopulationRun.id == summary.run_id).values(
            duration_s=summary.duration_s, timings={**{k: round(v, 3) for k, v in summary.timings_s.items()},
                                                    "peak_rss_mib": summary.peak_rss_mib}))
    return summary


def _run(settings: Settings, db: Database, options: RunOptions, summary: RunSummary, *, predictor: Any,
         observations: ObservationSource | None) -> None:
    timings = summary.timings_s
    t = time.perf_counter()
    inputs_extra: dict[str, Any] = {}
    if options.folder is not None:
        folder = Path(options.folder)
        if not folder.is_dir():
            raise InvalidInput("--ndjson", f"{folder} is not a folder")
    else:
        assert options.export is not None
        folder = Path(settings.population.work_dir) / summary.run_id
        summary.source, inputs_extra = _export(settings, options.export, folder, options.progress)
    summary.folder = folder
    timings["inputs"] = time.perf_counter() - t
    t = time.perf_counter()
    digest, described = inputs_digest(folder, full=options.full_digest)
    summary.inputs_digest = digest
    timings["digest"] = time.perf_counter() - t
    if options.sync_pacs if options.sync_pacs is not None else settings.population.sync_pacs:
        t = time.perf_counter()
        inputs_extra["pacs_sync"] = sync_imaging(settings, db, folder, options.as_of)
        timings["pacs_sync"] = time.perf_counter() - t
    if predictor is None:
        predictor = load_predictor(settings)
    t = time.perf_counter()
    nodule_cache = _nodule_cache(db)
    timings["nodule_cache_read"] = time.perf_counter() - t
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(STAGES), desc="population run", unit="stage", leave=False)

    def stage_done(name: str) -> None:
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(1)

    with open_engine(settings.population, engine=options.engine) as engine:
        scoring = ScoringOptions(on_stage=stage_done, as_of=options.as_of,
                                 site_systems=settings.population.site_systems,
                                 observations=observations if observations is not None else CacheObservations(db),
                                 predictor=predictor, nodule_cache=nodule_cache, progress=options.progress,
                                 feature_builder=engine.feature_builder, fusion_scorer=engine.fusion_scorer)
        scores = score_population(BulkExport(folder), scoring)
    timings.update({f"score_{k}": v for k, v in scores.timings_s.items()})
    summary.peak_rss_mib = dict(scores.peak_rss_mib)
    summary.model_versions = scores.model_versions
    t = time.perf_counter()
    counts = _store(settings, db, summary, scores, nodule_cache, described, inputs_extra, options)
    timings["store"] = time.perf_counter() - t
    stage_done("stored")
    if bar is not None:
        bar.close()
    summary.peak_rss_mib["stored"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary.counts = counts


def _store(settings: Settings, db: Database, summary: RunSummary, scores: PopulationScores,
           nodule_cache: dict[str, tuple[str, dict[str, Any]]], described: dict[str, Any],
           inputs_extra: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    run_id, as_of = summary.run_id, options.as_of
    now = datetime.now(UTC)
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        t = time.perf_counter()
        summary.timings_s[f"store_{name}"] = t - clock[0]
        clock[0] = t

    candidates = items.candidate_items(scores, as_of=as_of, due_soon_days=settings.population.due_soon_days)
    lap("candidates")
    reported = pl.Series("uid", sorted(scores.reported_uids), dtype=pl.String)
    patients = scores.patients.with_columns(run_id=pl.lit(run_id))
    writers: list[store_io.ConcurrentReplace] = []
    try:
        with db.session() as s:
            conn = s.connection()
            if conn.dialect.name == "postgresql":
                conn.execute(text("LOCK TABLE worklist_item IN SHARE ROW EXCLUSIVE MODE"))
                # The patients (with their screening uptake per site, counted where the new rows are visible) and
                # the registry's exam rows are copied on connections of their own meanwhile (nothing below reads
                # those tables), and committed right after this transaction.
                patient_writer = store_io.ConcurrentReplace(
                    db.engine, "population_patient", patients,
                    then=lambda c: dashboard.uptake_by_site(c, today=as_of))
                writers = [patient_writer, store_io.ConcurrentReplace(db.engine, "population_exam", scores.exams)]

                def uptake() -> dict[str, dict[str, int]]:
                    patient_writer.join()
                    lap("patient_wait")
                    result: dict[str, dict[str, int]] = patient_writer.result
                    return result
            else:
                store_io.replace_table(conn, "population_patient", patients)
                store_io.replace_table(conn, "population_exam", scores.exams)

                def uptake() -> dict[str, dict[str, int]]:
                    return dashboard.uptake_by_site(s, today=as_of)
            store_io.replace_table(conn, "population_nodule", scores.nodules.with_columns(run_id=pl.lit(run_id)))
            lap("nodule")
            counts = _store_worklist(settings, s, summary, scores, nodule_cache, described, inputs_extra, options,
                                     candidates, reported, uptake, lap, now)
            for writer in writers:
                writer.join()
            lap("exam_wait")
    except BaseException:
        for writer in writers:
            writer.finish(commit=False)
        raise
    for writer in writers:
        writer.finish(commit=True)
    return counts


def _store_worklist(settings: Settings, s: Session, summary: RunSummary, scores: PopulationScores,
                    nodule_cache: dict[str, tuple[str, dict[str, Any]]], described: dict[str, Any],
                    inputs_extra: dict[str, Any], options: RunOptions, candidates: pl.DataFrame, reported: pl.Series,
                    uptake: Callable[[], dict[str, dict[str, int]]], lap: Callable[[str], None], now: datetime
                    ) -> dict[str, Any]:
    """The rest of the run's transaction: the nodule cache, the worklist items and their events, the statistics and
    the run record. ``uptake``: the screening uptake per site of the patients just written (every site)."""
    run_id, as_of = summary.run_id, options.as_of
    conn = s.connection()
    changed = [(pid, d, r) for pid, (d, r) in scores.nodule_results.items()
               if nodule_cache.get(pid, ("",))[0] != d]
    if changed:
        ids = [pid for pid, _, _ in changed]
        for start in range(0, len(ids), 5000):
            conn.execute(delete(PopulationNoduleCache).where(
                PopulationNoduleCache.patient_id.in_(ids[start:start + 5000])))
        conn.execute(store_io.table("population_nodule_cache").insert(), [
            {"patient_id": pid, "input_digest": d, "as_of": as_of, "result": r.to_json()} for pid, d, r in changed])
    stored = store_io.read_frame(conn, select(
        WorklistItem.id, WorklistItem.item_key, WorklistItem.patient_id, WorklistItem.kind,
        WorklistItem.basis_date, WorklistItem.due_date, WorklistItem.loop_state, WorklistItem.loop_rank,
        WorklistItem.active, WorklistItem.study_uid, WorklistItem.disposition), items.STORED_SCHEMA)
    inserts, updates, events = items.merge(stored, candidates, scores, run_id=run_id, as_of=as_of, now=now,
                                           reported_uids=reported, policy=DEFAULT_POLICY)
    lap("merge")
    store_io.insert_frame(conn, "worklist_item", inserts)
    for frame in updates:
        store_io.update_frame(conn, "worklist_item", "id", frame)
    if not events.is_empty():
        touched = store_io.read_frame(conn, select(WorklistItem.id, WorklistItem.item_key)
                                      .where(WorklistItem.last_run == run_id),
                                      {"item_id": pl.Int64, "item_key": pl.String})
        ev = (events.join(touched, on="item_key", how="inner")
              .select("item_id", "event", "from_state", "to_state",
                      detail=pl.struct("order_ref", "study_uid").struct.json_encode())
              .with_columns(at=pl.lit(now), actor=pl.lit(items.SYSTEM_ACTOR), run_id=pl.lit(run_id)))
        store_io.insert_frame(conn, "worklist_event", ev)
    s.flush()
    lap("items")
    by_site = uptake()
    per_site = {site: dashboard.site_stats(s, [site], today=as_of, lost_after_days=settings.population.lost_after_days,
                                           uptake_figures=figures)
                for site, figures in sorted(by_site.items())}
    counts: dict[str, Any] = {**scores.counts(), "worklist_new": inserts.height, "worklist_updated":
                              sum(f.height for f in updates), "events": events.height, "sites": per_site,
                              "queues": _sum_queues(per_site.values())}
    lap("stats")
    s.execute(update(PopulationRun).where(PopulationRun.id == run_id).values(
        status="complete", finished_at=datetime.now(UTC), inputs_digest=summary.inputs_digest,
        inputs={**described, **inputs_extra, "notes": scores.notes[:50]}, model_versions=summary.model_versions,
        counts=counts, timings={k: round(v, 3) for k, v in summary.timings_s.items()},
        duration_s=None, source=summary.source[:1024]))
    record_audit(s, actor=options.triggered_by, action="population.run", entity=f"population_run/{run_id}",
                 detail={"as_of": as_of.isoformat(), "patients": scores.patients.height,
                         "inputs_digest": summary.inputs_digest})
    return counts


def _sum_queues(per_site: Iterable[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for figures in per_site:
        for k, v in figures["queues"].items():
            out[k] = out.get(k, 0) + int(v)
    return out
