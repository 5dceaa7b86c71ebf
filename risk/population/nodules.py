"""Tracked nodules in a population run: the per-patient path through the *same* code as the online service.

For every patient whose studies have nodule results in the imaging-feature cache (risk.imaging.cache, filled from
the PACS by risk.imaging.pipeline), the patient's resources are taken from the Bulk export as they are, grouped and
extracted by risk.extract (exactly as for a CDS call), the cached SR observations are linked into tracks by
risk.imaging.tracking, and :func:`risk.assess.assess` gives the guideline categories (Lung-RADS v2022 or Fleischner
2017, chosen by risk.assess.policy), the nodule recommendations with their due windows, and Brock per nodule. No
guideline logic lives here.

That path costs milliseconds per patient, so its result is cached per patient (``population_nodule_cache``) under a
digest of everything it reads: the patient's raw resources, the cached SR observations, the patient's age in
years on the run date (Fleischner's age limit) and :data:`NODULE_LOGIC_VERSION`. A run re-assesses only patients
whose digest changed (a new study, a new SR, an edited record); due *statuses* are recomputed from the stored
dates on every run.

:class:`ObservationSource` is the seam to the imaging side: :class:`CacheObservations` reads the service's
imaging-feature cache table (SQLite or PostgreSQL); tests may pass any implementation.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Final, Protocol

import orjson
import polars as pl
from sqlalchemy import select

from risk.assess import assess
from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy
from risk.domain import Assessment, NoduleObservation, NoduleTrack, RecommendationKind, RiskEstimate
from risk.domain.provenance import IngestionNote
from risk.domain.snapshot import SourceState, SourceStatus
from risk.extract.notes import NoteSink
from risk.extract.snapshot import assemble_snapshot, extract_fhir, group_resources
from risk.features.imaging import ReportedNodule, tracks_from_snapshot
from risk.imaging.cache import observation_from_json
from risk.imaging.tracking import track_nodules
from risk.sources.bulk import LINE, BulkSource, ndjson_lines
from risk.store.db import Database
from risk.store.imaging_cache import ImagingFeatureCacheRow

log = logging.getLogger(__name__)

NODULE_LOGIC_VERSION: Final = "population-nodules-1"
"""Bump when this module changes what it feeds risk.assess (invalidates every cached nodule result)."""
PATIENT_TYPES: Final = ("Patient", "Observation", "Condition", "FamilyMemberHistory", "ImagingStudy", "Endpoint")
IMAGING_KINDS: Final = frozenset({RecommendationKind.SCREENING_LDCT, RecommendationKind.FOLLOW_UP_LDCT,
                                  RecommendationKind.FOLLOW_UP_CT, RecommendationKind.DIAGNOSTIC_WORKUP})
_REF_DTYPE: Final = pl.Struct({"id": pl.String, "subject": pl.Struct({"reference": pl.String}),
                               "patient": pl.Struct({"reference": pl.String})})


class ObservationSource(Protocol):
    """Parsed SR results by Study Instance UID."""

    def observations(self, study_uids: pl.Series) -> dict[str, list[NoduleObservation]]:
        """Observations per study of ``study_uids`` (a String series; a health system's export holds millions)
        that has a parsed nodule report (a report with no nodules maps to ``[]``)."""
        ...


@dataclass(slots=True)
class CacheObservations:
    """The imaging-feature cache table (rows of other parser versions are ignored, as the cache does)."""

    database: Database
    parser_version: str | None = None
    batch: int = 5000

    def observations(self, study_uids: pl.Series) -> dict[str, list[NoduleObservation]]:
        """One streaming pass over the cache table (no per-UID queries: a health system has millions of studies);
        rows for studies not asked about are skipped, batch by batch (no Python set of millions of UIDs, which
        took longer than the pass over an empty cache)."""
        from risk.imaging.sr import PARSER_VERSION

        version = self.parser_version or PARSER_VERSION
        out: dict[str, list[NoduleObservation]] = {}
        if study_uids.is_empty():
            return out
        with self.database.session() as session:
            rows = session.execute(select(ImagingFeatureCacheRow.study_instance_uid,
                                          ImagingFeatureCacheRow.observations)
                                   .where(ImagingFeatureCacheRow.parser_version == version,
                                          ImagingFeatureCacheRow.is_measurement_report.is_(True))
                                   .execution_options(yield_per=self.batch))
            for batch in rows.partitions():
                asked = pl.Series([uid for uid, _ in batch], dtype=pl.String).is_in(study_uids).fill_null(False)
                for (study_uid, observations), wanted in zip(batch, asked, strict=True):
                    if not wanted:
                        continue
                    target = out.setdefault(study_uid, [])
                    for item in observations or ():
                        try:
                            target.append(observation_from_json(item))
                        except (KeyError, TypeError, ValueError) as exc:
                            log.warning("skipping a cached observation of study %s: %s", study_uid, exc)
        return out


@dataclass(slots=True)
class TableObservations:
    """What the vendor SRs reported, from tables (the file-backed source: no PACS, no DICOM parsing).

    ``nodules``: one row per nodule and study with the columns of risk.features.imaging.REPORTED_COLUMNS plus
    ``study_instance_uid`` (the synthetic cohort's ``truth/nodules.parquet``, or a site's SR export with the same
    columns); only rows with ``detected_by_ai`` (when present) count. ``studies``: every study that has an SR
    (``study_instance_uid``, ``study_date``), so a report with no nodules is known as such.
    """

    nodules: pl.DataFrame
    studies: pl.DataFrame

    @classmethod
    def from_cohort(cls, cohort_dir: Any) -> TableObservations:
        from pathlib import Path

        truth = Path(cohort_dir) / "truth"
        return cls(pl.read_parquet(truth / "nodules.parquet"), pl.read_parquet(truth / "studies.parquet"))

    def observations(self, study_uids: pl.Series) -> dict[str, list[NoduleObservation]]:
        from risk.domain import Lobe, Margin, NoduleComposition, SourceKind, SourceRef

        wanted = study_uids.unique()
        out: dict[str, list[NoduleObservation]] = {
            uid: [] for uid in self.studies.filter(pl.col("study_instance_uid").is_in(wanted))["study_instance_uid"]}
        frame = self.nodules.filter(pl.col("study_instance_uid").is_in(wanted))
        if "detected_by_ai" in frame.columns:
            frame = frame.filter(pl.col("detected_by_ai"))
        for r in frame.sort("study_instance_uid", "tracking_uid").iter_rows(named=True):
            composition = NoduleComposition(r["composition"]) if r["composition"] else NoduleComposition.UNKNOWN
            solid = r["sr_solid_component_mm"] if composition is NoduleComposition.PART_SOLID else None
            long_axis, short_axis = r["sr_long_axis_mm"], r["sr_short_axis_mm"]
            if long_axis is None and r["sr_volume_mm3"] is None:
                continue
            out.setdefault(r["study_instance_uid"], []).append(NoduleObservation(
                study_instance_uid=r["study_instance_uid"], study_date=r["study_date"],
                source=SourceRef(SourceKind.DICOM, f"urn:dicom:uid:{r['study_instance_uid']}", r["study_date"]),
                composition=composition, diameter_mm=long_axis, long_axis_mm=long_axis,
                short_axis_mm=short_axis if short_axis is None or long_axis is None or short_axis <= long_axis
                else long_axis, volume_mm3=r["sr_volume_mm3"], solid_component_mm=solid,
                margin=Margin(r["margin"]) if r["margin"] else Margin.UNKNOWN,
                lobe=Lobe(r["lobe"]) if r["lobe"] else None, tracking_uid=r["tracking_uid"],
                ai_malignancy_probability=r["ai_probability"]))
        return out


@dataclass(frozen=True, slots=True)
class NoduleResult:
    """What the per-patient path contributes for one patient (JSON-serialisable via :meth:`to_json`)."""

    patient_id: str
    categories: tuple[dict[str, Any], ...]
    patient_category: dict[str, Any] | None
    recommendations: tuple[dict[str, Any], ...]
    brock: dict[str, float]
    observation_dates: tuple[str, ...]
    reported_study_uids: tuple[str, ...]
    gaps: tuple[str, ...]
    abstentions: tuple[str, ...]
    tracks: tuple[tuple[dict[str, Any], ...], ...] = ()
    """The tracks as risk.features.imaging.ReportedNodule dicts (the fusion model's imaging features)."""
    exam_categories: dict[str, str] = field(default_factory=dict)
    """Study Instance UID → the exam's Lung-RADS category (risk.assess run as of that exam's date)."""

    @property
    def has_imaging_plan(self) -> bool:
        """A nodule recommendation sets the next CT (risk.assess suppresses the annual screen then)."""
        return any(r["kind"] in IMAGING_KINDS for r in self.recommendations)

    def to_json(self) -> dict[str, Any]:
        return {"patient_id": self.patient_id, "categories": list(self.categories),
                "patient_category": self.patient_category, "recommendations": list(self.recommendations),
                "brock": self.brock, "observation_dates": list(self.observation_dates),
                "reported_study_uids": list(self.reported_study_uids), "gaps": list(self.gaps),
                "abstentions": list(self.abstentions), "tracks": [list(t) for t in self.tracks],
                "exam_categories": dict(self.exam_categories)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NoduleResult:
        return cls(patient_id=data["patient_id"], categories=tuple(data["categories"]),
                   patient_category=data.get("patient_category"), recommendations=tuple(data["recommendations"]),
                   brock=dict(data.get("brock") or {}), observation_dates=tuple(data.get("observation_dates") or ()),
                   reported_study_uids=tuple(data.get("reported_study_uids") or ()),
                   gaps=tuple(data.get("gaps") or ()), abstentions=tuple(data.get("abstentions") or ()),
                   tracks=tuple(tuple(t) for t in data.get("tracks") or ()),
                   exam_categories=dict(data.get("exam_categories") or {}))

    def reported_tracks(self) -> list[list[ReportedNodule]]:
        return [[ReportedNodule(**{**o, "study_date": date.fromisoformat(o["study_date"])}) for o in t]
                for t in self.tracks]


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _tracks_json(tracks: Sequence[Sequence[ReportedNodule]]) -> tuple[tuple[dict[str, Any], ...], ...]:
    return tuple(tuple({**{k: getattr(o, k) for k in ReportedNodule.__slots__},
                        "study_date": o.study_date.isoformat()} for o in t) for t in tracks)


def result_from_assessment(a: Assessment, tracks: Sequence[NoduleTrack], reported: Sequence[str],
                           reported_tracks: Sequence[Sequence[ReportedNodule]] = ()) -> NoduleResult:
    def category(c: Any) -> dict[str, Any]:
        return {"track_id": c.track_id, "guideline": c.guideline, "category": c.category,
                "management": c.management, "due_date": _iso(c.due_date), "tracking_uid": c.tracking_uid,
                "description": c.description, "study_date": _iso(c.study_date)}

    recs = [{"kind": r.kind.value, "text": r.text, "basis": r.basis, "due_date": _iso(r.due_date),
             "window_start": _iso(r.window_start), "overdue_after": _iso(r.overdue_after), "track_id": r.track_id,
             "optional": r.optional, "last_done": _iso(r.last_done)}
            for r in a.recommendations if r.track_id is not None]
    brock = {r.subject: r.probability for r in a.risks
             if isinstance(r, RiskEstimate) and r.subject is not None and r.model.startswith("brock")}
    nodule_words = ("nodule", "Lung-RADS", "Fleischner")
    return NoduleResult(
        patient_id=a.patient_id,
        categories=tuple(category(c) for c in a.nodule_categories),
        patient_category=category(a.patient_category) if a.patient_category is not None else None,
        recommendations=tuple(recs), brock=brock,
        observation_dates=tuple(sorted({o.study_date.isoformat() for t in tracks for o in t.observations})),
        reported_study_uids=tuple(sorted(reported)),
        gaps=tuple(f"{g.what}: {g.reason}" for g in a.data_gaps if any(w in g.what for w in nodule_words)),
        abstentions=tuple(f"{x.model}: {x.reason}" for x in a.abstentions
                          if any(w in x.model for w in ("nodule", "brock", "Lung-RADS", "Fleischner"))),
        tracks=_tracks_json(reported_tracks),
    )


@dataclass(slots=True)
class _Imaging:
    studies: tuple[Any, ...]
    tracks: tuple[NoduleTrack, ...]
    notes: tuple[IngestionNote, ...]
    status: SourceStatus


def patient_resource_lines(source: BulkSource, patient_ids: set[str]) -> dict[str, list[bytes]]:
    """The raw NDJSON lines of each listed patient's resources (Patient, Observation, ..., Endpoints for all)."""
    out: dict[str, list[bytes]] = defaultdict(list)
    endpoints: list[bytes] = []
    wanted = pl.Series("w", sorted(patient_ids), dtype=pl.String)
    ref = pl.coalesce(pl.col("subject").struct.field("reference"), pl.col("patient").struct.field("reference"))
    for resource_type in PATIENT_TYPES:
        for path in source.files(resource_type):
            lines = ndjson_lines(path)
            if resource_type == "Endpoint":
                endpoints.extend(s.encode() for s in lines.collect()[LINE].to_list())
                continue
            try:
                frame = (lines.with_columns(pl.col(LINE).str.json_decode(_REF_DTYPE).alias("_r")).unnest("_r")
                         .select(LINE, pid=(pl.col("id") if resource_type == "Patient"
                                            else ref.str.extract(r"^(?:.*/)?Patient/([^/]+)$", 1)))
                         .filter(pl.col("pid").is_in(wanted.implode())).collect())
            except pl.exceptions.PolarsError:
                frame = _slow_lines(path, resource_type, patient_ids)
            for pid, line in frame.select("pid", LINE).iter_rows():
                out[pid].append(line.encode())
    for pid in out:
        out[pid].extend(endpoints)
    return dict(out)


def _slow_lines(path: Any, resource_type: str, patient_ids: set[str]) -> pl.DataFrame:
    """Line by line (a file with a bad line): lines that do not parse are skipped."""
    pids, kept = [], []
    for line in ndjson_lines(path).collect()[LINE].to_list():
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(res, dict):
            continue
        if resource_type == "Patient":
            pid = res.get("id")
        else:
            r = (res.get("subject") or res.get("patient") or {}).get("reference") or ""
            pid = r.rsplit("Patient/", 1)[-1] if "Patient/" in r else None
        if pid in patient_ids:
            pids.append(pid)
            kept.append(line)
    return pl.DataFrame({"pid": pids, LINE: kept}, schema={"pid": pl.String, LINE: pl.String})


def input_digest(lines: Sequence[bytes], observations: Mapping[str, Sequence[NoduleObservation]],
                 age_years: int | None) -> str:
    h = hashlib.sha256()
    h.update(NODULE_LOGIC_VERSION.encode())
    h.update(f"|age={age_years}|".encode())
    for line in sorted(lines):
        h.update(hashlib.sha256(line).digest())
    from risk.imaging.cache import observation_to_json

    for uid in sorted(observations):
        h.update(uid.encode())
        for o in sorted(orjson.dumps(observation_to_json(x), option=orjson.OPT_SORT_KEYS)
                         for x in observations[uid]):
            h.update(o)
    return h.hexdigest()


def assess_patient(patient_id: str, lines: Sequence[bytes], observations: Mapping[str, list[NoduleObservation]],
                   study_dates: Mapping[str, date | None], *, as_of: date,
                   policy: AssessmentPolicy = DEFAULT_POLICY) -> NoduleResult:
    """risk.assess on the patient's raw resources and cached SR observations (the online code path)."""
    resources = []
    for line in lines:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            resources.append(value)
    notes = NoteSink()
    records = group_resources(resources, patient_id, notes)
    assessment, tracks, snapshot = _assess_on(patient_id, records, observations, study_dates, as_of, policy, notes)
    result = result_from_assessment(assessment, tracks, list(observations), tracks_from_snapshot(snapshot))
    exams: dict[str, str] = {}
    for uid, day in sorted(study_dates.items(), key=lambda kv: (kv[1] or date.max, kv[0])):
        if uid not in observations or day is None or day > as_of:
            continue
        if day == as_of:
            a = assessment
        else:
            a, _t, _s = _assess_on(patient_id, records, observations, study_dates, day, policy, NoteSink())
        pc = a.patient_category
        if pc is not None and pc.guideline.startswith("Lung-RADS") and pc.study_date == day:
            exams[uid] = pc.category
    return replace(result, exam_categories=exams)


def _assess_on(patient_id: str, records: Any, observations: Mapping[str, list[NoduleObservation]],
               study_dates: Mapping[str, date | None], day: date, policy: AssessmentPolicy,
               notes: NoteSink) -> tuple[Assessment, tuple[NoduleTrack, ...], Any]:
    fhir = extract_fhir(records, day)
    observed = [o for obs in observations.values() for o in obs if o.study_date <= day]
    evaluated = [(uid, d) for uid, d in study_dates.items() if uid in observations and d is not None and d <= day]
    tracking = track_nodules(observed, evaluated_studies=evaluated)
    imaging = _Imaging(studies=(), tracks=tracking.tracks, notes=tracking.notes,
                       status=SourceStatus("pacs", SourceState.OK, "imaging-feature cache"))
    snapshot = assemble_snapshot(patient_id, day, fhir, imaging=imaging, notes=notes.notes)
    return assess(snapshot, policy=policy), tracking.tracks, snapshot
