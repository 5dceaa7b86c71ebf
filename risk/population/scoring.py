"""Population scoring: a Bulk export (+ the imaging-feature cache, + a fusion model) → one result row per patient.

For every patient: eligibility per program (USPSTF 2021, CMS 2022, ACS 2023), PLCOm2012 (or PLCOm2012noRace), the
fusion model's risk when one is loaded, each tracked nodule's Lung-RADS or Fleischner category with its next due
date, the last chest CT, and the annual-screening recommendation with its window. Where each number comes from:

==========================  ====================================================================================
feature table               risk.features.bulk.build_feature_table (the online path's rules, tested equal)
eligibility, PLCOm2012,     risk.population.rules: risk.assess's rules as polars expressions from the rules' own
annual screen, chest CT     data; tests check equality with the one-patient functions on every cohort patient
nodule categories, nodule   risk.population.nodules: the patient's raw resources + cached SR observations through
follow-up, Brock            risk.extract, risk.imaging.tracking and risk.assess.assess (the online code path)
fusion risk                 fusion_models ``predict_frame`` over rows built by risk.features.fusion_row.patient_row
==========================  ====================================================================================

**Priority risk** (``risk``): the fusion model's probability when a model is loaded and it scores the patient,
else PLCOm2012's six-year risk; null when neither applies. ``high_risk``: a six-year risk ≥ the policy's
``high_risk_6yr`` (1.51 %, risk.assess.policy), or the fusion model over its threshold (as risk.assess flags it).

The engine (risk.population.engines) decides *where* the feature table is built: polars in this process, or the
same per-file feature code on a Dask cluster. Everything after the feature table runs here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Protocol

import polars as pl

from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy
from risk.population import rules
from risk.population.frames import ExtraFrames, read_extra, read_orders
from risk.population.nodules import (
    NODULE_LOGIC_VERSION,
    NoduleResult,
    ObservationSource,
    assess_patient,
    input_digest,
    patient_resource_lines,
)
from risk.sources.bulk import BulkSource

log = logging.getLogger(__name__)

RECOMMENDATION_SCHEMA: Final[dict[str, Any]] = {
    "patient_id": pl.String, "kind": pl.String, "track_id": pl.String, "guideline": pl.String,
    "category": pl.String, "text": pl.String, "basis": pl.String, "basis_date": pl.Date, "window_start": pl.Date,
    "due_date": pl.Date, "overdue_after": pl.Date, "optional": pl.Boolean,
}
EXAM_SCHEMA: Final[dict[str, Any]] = {
    "patient_id": pl.String, "study_uid": pl.String, "exam_date": pl.Date, "screening": pl.Boolean,
    "exam_kind": pl.String, "order_code": pl.String, "reported": pl.Boolean, "lung_rads": pl.String,
}
NODULE_SCHEMA: Final[dict[str, Any]] = {
    "patient_id": pl.String, "track_id": pl.String, "tracking_uid": pl.String, "guideline": pl.String,
    "category": pl.String, "management": pl.String, "due_date": pl.Date, "study_date": pl.Date,
    "description": pl.String,
}
ACTIONABLE_NODULE_KINDS: Final = ("follow_up_ldct", "follow_up_ct", "diagnostic_workup")


def _keep_columns() -> frozenset[str]:
    from risk.store.population import PopulationPatient

    return frozenset(c.name for c in PopulationPatient.__table__.columns) | {"has_imaging_plan", "brock_max"}


KEEP_COLUMNS: Final = _keep_columns()
"""What is kept of the patient table after scoring (the stored columns; lab values are dropped)."""


class FusionBatchPredictor(Protocol):
    """fusion_models.runtime.ArtifactPredictor, as far as population scoring needs it."""

    model_id: str
    version: str
    horizon_years: float | None

    def predict_frame(self, frame: pl.DataFrame) -> pl.DataFrame: ...


@dataclass(slots=True)
class ScoringOptions:
    as_of: date
    policy: AssessmentPolicy = DEFAULT_POLICY
    site_systems: Mapping[str, str] = field(default_factory=dict)
    observations: ObservationSource | None = None
    predictor: FusionBatchPredictor | None = None
    nodule_cache: Mapping[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """patient_id → (input digest, NoduleResult JSON) from earlier runs."""
    progress: bool = False
    on_stage: Callable[[str], None] | None = None
    """Called with each stage's name when it is done (the CLI's progress bar)."""
    feature_builder: Callable[[BulkSource, date, Mapping[str, pl.DataFrame]], Any] | None = None
    """Builds the risk.features.bulk feature table from the stages not already decoded (the Dask engine passes its
    own); default: risk.population.engines.local_features, in this process."""
    fusion_scorer: Callable[[Any, pl.DataFrame], pl.DataFrame] | None = None
    """(predictor, feature frame) → probability / abstain_reason; default: the predictor's ``predict_frame``."""


@dataclass(slots=True)
class PopulationScores:
    patients: pl.DataFrame
    nodules: pl.DataFrame
    recommendations: pl.DataFrame
    extra: ExtraFrames
    exams: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=EXAM_SCHEMA))
    reported_uids: frozenset[str] = frozenset()
    nodule_results: dict[str, tuple[str, NoduleResult]] = field(default_factory=dict)
    reassessed: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    """The process's peak resident memory after each stage."""

    def counts(self) -> dict[str, int]:
        p = self.patients
        return {
            "patients": p.height,
            "eligible_any": int(p["eligible_any"].fill_null(False).sum()),
            "eligibility_unknown": int(p["eligible_any"].is_null().sum()),
            **{c: int(p[c].fill_null(False).sum()) for c in rules.PROGRAM_COLUMNS.values()},
            "plco_scored": int(p["plco_probability"].is_not_null().sum()),
            "fusion_scored": int(p["fusion_probability"].is_not_null().sum()),
            "high_risk": int(p["high_risk"].fill_null(False).sum()),
            "with_nodules": int(p["patient_category"].is_not_null().sum()),
            "nodules": self.nodules.height,
            "nodules_reassessed": self.reassessed,
            "recommendations": self.recommendations.height,
        }


def _rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _progress(enabled: bool, iterable: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="patient", leave=False)


def score_population(source: BulkSource, options: ScoringOptions) -> PopulationScores:
    as_of, policy = options.as_of, options.policy
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    extra = read_extra(source, as_of=as_of, site_systems=options.site_systems, policy=policy)
    notes = list(extra.bad_line_notes)
    timings["extra_frames"] = time.perf_counter() - t0
    memory = {"extra_frames": _rss_mib()}
    done = options.on_stage or (lambda _name: None)
    done("patients and studies")

    t = time.perf_counter()
    builder = options.feature_builder
    if builder is None:
        from risk.population.engines import local_features

        builder = local_features
    built = builder(source, as_of, extra.feature_frames)
    features: pl.DataFrame = built.table
    notes.extend(n.message for n in built.notes)
    extra.feature_frames = {}
    timings["features"] = time.perf_counter() - t
    memory["features"] = _rss_mib()
    done("feature table")

    t = time.perf_counter()
    already = len(extra.bad_line_notes)
    read_orders(source, extra, as_of=as_of)
    notes.extend(extra.bad_line_notes[already:])
    timings["orders"] = time.perf_counter() - t
    done("orders")

    t = time.perf_counter()
    nodule_results, reassessed, reported = _nodules(source, features, extra, options)
    timings["nodules"] = time.perf_counter() - t
    done("nodules")

    t = time.perf_counter()
    patients = _patients(features, extra, nodule_results, as_of, policy)
    timings["rules"] = time.perf_counter() - t

    model_versions = {"eligibility": rules.elig.MODEL_VERSION, "plcom2012": rules.plco.MODEL_VERSION,
                      "plcom2012-norace": rules.plco.NORACE_MODEL_VERSION, "nodules": NODULE_LOGIC_VERSION}
    t = time.perf_counter()
    patients = _fusion(patients, nodule_results, options.predictor, policy, options.fusion_scorer)
    if options.predictor is not None:
        model_versions["fusion"] = f"{options.predictor.model_id} {options.predictor.version}"
    timings["fusion"] = time.perf_counter() - t
    memory["scored"] = _rss_mib()
    done("risks and eligibility")
    patients = patients.select([c for c in patients.columns if c in KEEP_COLUMNS])

    nodules = _nodule_frame(nodule_results)
    recommendations = _recommendations(patients, nodule_results)
    exams = _exams(extra, nodule_results, reported, policy)
    timings["total"] = time.perf_counter() - t0
    return PopulationScores(patients=patients, nodules=nodules, recommendations=recommendations, extra=extra,
                            exams=exams, reported_uids=frozenset(u for u, _ in reported.items()),
                            nodule_results=nodule_results, reassessed=reassessed, timings_s=timings, notes=notes,
                            model_versions=model_versions, peak_rss_mib=memory)


# --- nodules (the per-patient path) ------------------------------------------------------------------------------
def _nodules(source: BulkSource, features: pl.DataFrame, extra: ExtraFrames, options: ScoringOptions
             ) -> tuple[dict[str, tuple[str, NoduleResult]], int, dict[str, int]]:
    """(per-patient results, how many were re-assessed, {reported study UID: number of nodules})."""
    if options.observations is None or extra.studies.is_empty():
        return {}, 0, {}
    studies = extra.studies.filter(pl.col("is_ct"))
    observations = options.observations.observations(studies["uid"])
    reported = {uid: len(obs) for uid, obs in observations.items()}
    if not observations:
        return {}, 0, reported
    with_obs = studies.filter(pl.col("uid").is_in(list(observations)))
    per_patient: dict[str, dict[str, date | None]] = {}
    for pid, uid, started in with_obs.select("pid", "uid", "started").iter_rows():
        per_patient.setdefault(pid, {})[uid] = started
    subset = {pid for pid, uids in per_patient.items() if any(observations[u] for u in uids)}
    if not subset:
        return {}, 0, reported
    ages = dict(features.filter(pl.col("patient_id").is_in(list(subset))).select("patient_id", "age_years")
                .iter_rows())
    lines = patient_resource_lines(source, subset)
    out: dict[str, tuple[str, NoduleResult]] = {}
    reassessed = 0
    for pid in _progress(options.progress, sorted(subset), len(subset), "nodules"):
        obs = {uid: observations[uid] for uid in per_patient[pid]}
        digest = input_digest(lines.get(pid, []), obs, ages.get(pid))
        cached = options.nodule_cache.get(pid)
        if cached is not None and cached[0] == digest:
            out[pid] = (digest, NoduleResult.from_json(cached[1]))
            continue
        try:
            result = assess_patient(pid, lines.get(pid, []), obs, per_patient[pid], as_of=options.as_of,
                                    policy=options.policy)
        except Exception:  # one patient's bad data must not sink the run
            log.exception("nodule assessment failed for %s", pid)
            continue
        reassessed += 1
        out[pid] = (digest, result)
    return out, reassessed, reported


# --- the patient table ---------------------------------------------------------------------------------------------
def _nodule_patient_frame(results: Mapping[str, tuple[str, NoduleResult]]) -> pl.DataFrame:
    rows = []
    for pid, (_digest, r) in results.items():
        pc = r.patient_category or {}
        due = [x["due_date"] for x in r.recommendations if x["kind"] in ACTIONABLE_NODULE_KINDS and x["due_date"]]
        annual = sorted((x for x in r.recommendations if x["kind"] == "screening_ldct" and x["due_date"]),
                        key=lambda x: x["due_date"])
        first = annual[0] if annual else {}
        rows.append({"patient_id": pid, "has_imaging_plan": r.has_imaging_plan,
                     "nodule_last_date": max((date.fromisoformat(d) for d in r.observation_dates), default=None),
                     "nodule_study_uids": list(r.reported_study_uids),
                     "patient_guideline": pc.get("guideline"), "patient_category": pc.get("category"),
                     "nodule_due_date": date.fromisoformat(min(due)) if due else None,
                     "brock_max": max(r.brock.values(), default=None),
                     "nodule_annual_window_start": _d(first.get("window_start")),
                     "nodule_annual_due_date": _d(first.get("due_date")),
                     "nodule_annual_overdue_after": _d(first.get("overdue_after"))})
    return pl.DataFrame(rows, schema={"patient_id": pl.String, "has_imaging_plan": pl.Boolean,
                                      "nodule_last_date": pl.Date, "nodule_study_uids": pl.List(pl.String),
                                      "patient_guideline": pl.String, "patient_category": pl.String,
                                      "nodule_due_date": pl.Date, "brock_max": pl.Float64,
                                      "nodule_annual_window_start": pl.Date, "nodule_annual_due_date": pl.Date,
                                      "nodule_annual_overdue_after": pl.Date})


def _patients(features: pl.DataFrame, extra: ExtraFrames, nodule_results: Mapping[str, tuple[str, NoduleResult]],
              as_of: date, policy: AssessmentPolicy) -> pl.DataFrame:
    nod = _nodule_patient_frame(nodule_results)
    nodule_uids = nod.select("patient_id", uid=pl.col("nodule_study_uids")).explode("uid").drop_nulls()
    studies = extra.studies.join(nodule_uids.rename({"patient_id": "pid"}).with_columns(has_nodules=pl.lit(True)),
                                 on=["pid", "uid"], how="left")
    chest = (studies.filter(rules.chest_ct_filter() | pl.col("has_nodules").fill_null(False))
             .group_by("pid").agg(last_ct=pl.col("started").max(), chest_ct_count=pl.col("uid").n_unique())
             .rename({"pid": "patient_id"}))
    sdm = pl.concat([
        extra.orders.filter(pl.col("sdm") & (pl.col("status") == "completed")).select("pid"),
        extra.procedures.filter(pl.col("sdm")).select("pid"),
    ]).unique().with_columns(sdm_documented=pl.lit(True)).rename({"pid": "patient_id"})
    people = extra.patients.rename({"pid": "patient_id"}).select(
        "patient_id", "site", "mrn", "name", "phone", "birth_date")
    frame = (
        features.lazy()
        .join(people.lazy(), on="patient_id", how="left")
        .join(nod.lazy(), on="patient_id", how="left")
        .join(chest.lazy(), on="patient_id", how="left")
        .join(sdm.lazy(), on="patient_id", how="left")
        .with_columns(site=pl.col("site").fill_null("unknown"),
                      sdm_documented=pl.col("sdm_documented").fill_null(False),
                      chest_ct_count=pl.col("chest_ct_count").fill_null(0),
                      last_chest_ct=pl.max_horizontal("last_ct", "nodule_last_date"),
                      has_imaging_plan=pl.col("has_imaging_plan").fill_null(False))
        .with_columns(rules.eligibility_columns())
        .with_columns(rules.eligible_any_expr())
        .with_columns(rules.plco_columns())
        .with_columns(rules.plco_finish())
        .with_columns(rules.annual_columns(as_of, policy))
        .with_columns([pl.coalesce(f"annual_{c}", f"nodule_annual_{c}").alias(f"annual_{c}")
                       for c in ("window_start", "due_date", "overdue_after")])
        .with_columns(quit_date=pl.when(pl.col("smoking_status") == rules.FORMER)
                      .then(pl.lit(as_of) - pl.duration(days=(pl.col("years_since_quit") * 365.25).round(0)
                                                        .cast(pl.Int64))),
                      assessed_by=pl.when(pl.col("patient_category").is_not_null() | pl.col("nodule_last_date")
                                          .is_not_null()).then(pl.lit("assess")).otherwise(pl.lit("vectorised")))
        .drop("_plco_cpd", "_plco_dur", "last_ct", "nodule_last_date", "nodule_study_uids",
              "nodule_annual_window_start", "nodule_annual_due_date", "nodule_annual_overdue_after")
        .collect()
    )
    return frame


def _fusion(patients: pl.DataFrame, nodule_results: Mapping[str, tuple[str, NoduleResult]],
            predictor: FusionBatchPredictor | None, policy: AssessmentPolicy,
            scorer: Callable[[Any, pl.DataFrame], pl.DataFrame] | None = None) -> pl.DataFrame:
    if predictor is None:
        out = patients.with_columns(fusion_probability=pl.lit(None, pl.Float64),
                                    fusion_abstain_reason=pl.lit(None, pl.String))
    else:
        from fusion_models.features import PATIENT_SCHEMA
        from risk.features.fusion_row import patient_row
        from risk.features.training_table import _typed

        tracks = {pid: r.reported_tracks() for pid, (_d, r) in nodule_results.items()}
        rows = [patient_row(row, tracks.get(row["patient_id"], [])) for row in patients.iter_rows(named=True)]
        frame = _typed(PATIENT_SCHEMA, rows, {})
        scored = scorer(predictor, frame) if scorer is not None else predictor.predict_frame(frame)
        out = patients.with_columns(fusion_probability=scored["probability"],
                                    fusion_abstain_reason=scored["abstain_reason"])
    fusion_threshold = policy.high_risk_6yr if (predictor is None or predictor.horizon_years == 6) \
        else policy.high_risk_fusion
    return out.with_columns(
        risk=pl.coalesce("fusion_probability", "plco_probability"),
        risk_source=pl.when(pl.col("fusion_probability").is_not_null()).then(pl.lit("fusion"))
        .when(pl.col("plco_probability").is_not_null()).then(pl.col("plco_model")),
        high_risk=((pl.col("plco_probability") >= policy.high_risk_6yr).fill_null(False)
                   | (pl.col("fusion_probability") >= fusion_threshold).fill_null(False)),
    )


# --- nodules and recommendations as tables --------------------------------------------------------------------------
def _d(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _nodule_frame(results: Mapping[str, tuple[str, NoduleResult]]) -> pl.DataFrame:
    rows = [{"patient_id": pid, "track_id": c["track_id"], "tracking_uid": c.get("tracking_uid"),
             "guideline": c["guideline"], "category": c["category"], "management": c["management"],
             "due_date": _d(c.get("due_date")), "study_date": _d(c.get("study_date")),
             "description": c.get("description")}
            for pid, (_digest, r) in sorted(results.items()) for c in r.categories]
    return pl.DataFrame(rows, schema=NODULE_SCHEMA)


def _recommendations(patients: pl.DataFrame, results: Mapping[str, tuple[str, NoduleResult]]) -> pl.DataFrame:
    """One row per open recommendation: the annual/baseline screen (vectorised) and each nodule follow-up."""
    annual = (
        patients.filter(pl.col("annual_due_date").is_not_null())
        .select(
            "patient_id",
            kind=pl.when(pl.col("last_chest_ct").is_null()).then(pl.lit("screening_baseline"))
            .otherwise(pl.lit("annual_screen")),
            track_id=pl.lit(None, pl.String), guideline=pl.lit(None, pl.String), category=pl.lit(None, pl.String),
            text=pl.when(pl.col("last_chest_ct").is_null())
            .then(pl.lit("Screening LDCT (no prior chest CT on record)")
                  + pl.when(pl.col("eligible_cms_2022").fill_null(False) & ~pl.col("sdm_documented"))
                  .then(pl.lit("; shared decision-making visit first (HCPCS G0296)")).otherwise(pl.lit("")))
            .otherwise(pl.lit("Annual screening LDCT")),
            basis=pl.lit("eligible for lung cancer screening"),
            basis_date=pl.col("last_chest_ct"), window_start=pl.col("annual_window_start"),
            due_date=pl.col("annual_due_date"), overdue_after=pl.col("annual_overdue_after"),
            optional=pl.lit(False),
        )
    )
    rows = []
    for pid, (_digest, r) in sorted(results.items()):
        cats = {c["track_id"]: c for c in r.categories}
        for rec in r.recommendations:
            if rec["kind"] not in ACTIONABLE_NODULE_KINDS and rec["kind"] != "screening_ldct":
                continue
            cat = cats.get(rec["track_id"]) or {}
            kind = "annual_screen" if rec["kind"] == "screening_ldct" else "nodule_follow_up"
            rows.append({"patient_id": pid, "kind": kind, "track_id": rec["track_id"],
                         "guideline": cat.get("guideline"), "category": cat.get("category"), "text": rec["text"],
                         "basis": rec["basis"], "basis_date": _d(rec.get("last_done")),
                         "window_start": _d(rec.get("window_start")), "due_date": _d(rec.get("due_date")),
                         "overdue_after": _d(rec.get("overdue_after")), "optional": bool(rec.get("optional"))})
    nodule = pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA)
    both = pl.concat([annual.cast(RECOMMENDATION_SCHEMA), nodule])  # type: ignore[arg-type]
    return both.sort("patient_id", "kind", "track_id", nulls_last=True)


def _exams(extra: ExtraFrames, results: Mapping[str, tuple[str, NoduleResult]], reported: Mapping[str, int],
           policy: AssessmentPolicy) -> pl.DataFrame:
    """Chest CTs with their kind (baseline / annual / follow-up / diagnostic) and Lung-RADS category when known.

    Screening = the linked order is CPT 71271 (or HCPCS G0297); without a linked order, a description with a
    screening word (risk.assess.policy). The first screening exam is the baseline. A chest CT ordered as CPT
    71250/71260/71270 is a follow-up. Lung-RADS: the category risk.assess gave that exam (as of its date), or 1
    when its SR reports no nodule; unknown otherwise."""
    from risk.population.frames import SCREENING_ORDER_CODES

    categories = {uid: c for _d, r in results.values() for uid, c in r.exam_categories.items()}
    has_nodules = [uid for uid, n in reported.items() if n > 0]
    studies = extra.studies.filter(rules.chest_ct_filter() | pl.col("uid").is_in(has_nodules))
    codes = extra.orders.select("order_id", order_code="code")
    frame = (
        studies.join(codes, on="order_id", how="left")
        .with_columns(screening=pl.when(pl.col("order_code").is_not_null())
                      .then(pl.col("order_code").is_in(list(SCREENING_ORDER_CODES))).otherwise(pl.col("screening_desc")),
                      follow_up=pl.col("order_code").is_not_null()
                      & ~pl.col("order_code").is_in(list(SCREENING_ORDER_CODES)))
        .sort("pid", "started", "uid", nulls_last=True)
        .with_columns(n_screen=pl.col("screening").cast(pl.Int64).cum_sum().over("pid"))
        .with_columns(exam_kind=pl.when(pl.col("follow_up")).then(pl.lit("follow-up"))
                      .when(pl.col("screening") & (pl.col("n_screen") == 1)).then(pl.lit("baseline"))
                      .when(pl.col("screening")).then(pl.lit("annual")).otherwise(pl.lit("diagnostic")),
                      reported=pl.col("uid").is_in(list(reported)),
                      lung_rads=pl.col("uid").replace_strict(categories, default=None, return_dtype=pl.String))
        .with_columns(lung_rads=pl.when(pl.col("lung_rads").is_null() & pl.col("uid").is_in(
            [u for u, n in reported.items() if n == 0])).then(pl.lit("1")).otherwise(pl.col("lung_rads")))
        .select(patient_id="pid", study_uid="uid", exam_date="started", screening="screening",
                exam_kind="exam_kind", order_code="order_code", reported="reported", lung_rads="lung_rads")
    )
    return frame.cast(EXAM_SCHEMA)  # type: ignore[arg-type]
