"""A patient's imaging from the PACS: studies, nodule observations from vendor SRs, tracks with growth.

``load_imaging`` is the one call the snapshot assembly makes (the agreed interface). It

1. finds the patient's studies by QIDO-RS, by each DICOM Patient ID and each Study Instance UID the EHR knows
   (ImagingStudy), and keeps those dated on or before ``as_of``;
2. finds each study's SR instances (series of modality SR, then their instances), keeping the SOP classes that
   can carry TID 1500;
3. for each SR: the imaging-feature cache by SOP Instance UID, else WADO-RS retrieve + parse
   (:mod:`risk.imaging.sr`, with the image geometry needed for SCOORD regions and key slices) + cache;
4. links the observations into tracks with growth (:mod:`risk.imaging.tracking`).

Nothing raises past it. A PACS that cannot be reached or times out yields ``SourceState.UNAVAILABLE`` (nothing
was read) or ``PARTIAL`` (some of it was) with an ERROR note, so that "no nodules" and "could not check" differ;
after the first outage no further request is sent (each would wait for its own timeout). A broken or refused
SR is a WARNING note and the rest goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from risk.deadline import Deadline
from risk.domain import (
    ImagingStudyRef,
    IngestionNote,
    NoduleObservation,
    NoduleTrack,
    NoteCode,
    NoteSeverity,
    SourceState,
    SourceStatus,
    dicom_ref,
)
from risk.errors import InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from risk.imaging.cache import ImagingFeatureCache
from risk.imaging.geometry import ImageGeometry
from risk.imaging.sr import MEASUREMENT_REPORT_SOP_CLASSES, SrParseResult, parse_measurement_report
from risk.imaging.tracking import track_nodules
from risk.sources.dicomweb import DicomSource, InstanceRecord, StudyRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")

PACS_SYSTEM = "pacs"
"""``SourceStatus.system`` of the imaging source (the snapshot assembly uses the same name)."""
MODALITY_SR = "SR"


@dataclass(frozen=True)
class ImagingResult:
    """What the PACS says about one patient on ``as_of``."""

    studies: tuple[ImagingStudyRef, ...]
    tracks: tuple[NoduleTrack, ...]
    notes: tuple[IngestionNote, ...]
    status: SourceStatus


class _Outage(Exception):
    """The PACS stopped answering: stop sending requests."""


@dataclass
class _Run:
    source: DicomSource
    deadline: Deadline
    notes: list[IngestionNote] = field(default_factory=list)
    answered: int = 0
    failed: int = 0
    outage: str | None = None

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One request; an outage is noted once and ends the run (raises _Outage)."""
        if self.outage is not None:
            raise _Outage(self.outage)
        if self.deadline.expired:
            self._stop(NoteCode.DEADLINE_EXCEEDED, f"deadline exceeded before {what}")
        try:
            result = fn(*args, deadline=self.deadline, **kwargs)
        except UpstreamUnavailable as exc:
            code = NoteCode.DEADLINE_EXCEEDED if self.deadline.expired else NoteCode.UPSTREAM_UNAVAILABLE
            self._stop(code, f"{what}: {exc}")
        self.answered += 1
        return result

    def _stop(self, code: NoteCode, message: str) -> None:
        self.failed += 1
        self.outage = message
        self.notes.append(IngestionNote(NoteSeverity.ERROR, code, PACS_SYSTEM,
                                        f"{message}; imaging findings may be incomplete (absence of nodules "
                                        "means nothing)"))
        raise _Outage(message)

    def error(self, code: NoteCode, source: str, message: str) -> None:
        self.notes.append(IngestionNote(NoteSeverity.ERROR, code, source, message))

    def warn(self, code: NoteCode, source: str, message: str) -> None:
        self.notes.append(IngestionNote(NoteSeverity.WARNING, code, source, message))

    def info(self, code: NoteCode, source: str, message: str) -> None:
        self.notes.append(IngestionNote(NoteSeverity.INFO, code, source, message))


def load_imaging(source: DicomSource, cache: ImagingFeatureCache | None, *, dicom_patient_ids: Sequence[str],
                 study_uids: Sequence[str], as_of: date, deadline: Deadline) -> ImagingResult:
    """The patient's studies up to ``as_of``, the nodule tracks from their SRs, notes, and the PACS status."""
    run = _Run(source, deadline)
    studies: dict[str, StudyRecord] = {}
    observations: list[NoduleObservation] = []
    evaluated: list[tuple[str, date]] = []
    try:
        _find_studies(run, dicom_patient_ids, study_uids, studies)
        for record in sorted(studies.values(), key=lambda r: (r.study_date or date.min, r.study_instance_uid)):
            if record.study_date is None or record.study_date > as_of:
                continue
            found, evaluated_here = _study_observations(run, cache, record)
            observations.extend(found)
            evaluated.extend(evaluated_here)
    except _Outage:
        pass
    except Exception as exc:  # the ingestion boundary: a bug here must not sink the snapshot
        logger.exception("imaging ingestion failed")
        run.failed += 1
        run.notes.append(IngestionNote(NoteSeverity.ERROR, NoteCode.MALFORMED, PACS_SYSTEM,
                                       f"imaging ingestion stopped ({type(exc).__name__}: {exc}); imaging findings "
                                       "may be incomplete"))

    kept = [r for r in studies.values() if r.study_date is not None and r.study_date <= as_of]
    for record in studies.values():
        if record.study_date is None:
            run.warn(NoteCode.MISSING_VALUE, f"urn:dicom:uid:{record.study_instance_uid}",
                     "study has no StudyDate in the PACS: it cannot be placed in time and was left out")
    refs = tuple(_study_ref(r, source) for r in sorted(kept, key=lambda r: (r.study_date,
                                                                                   r.study_instance_uid)))
    tracks: tuple[NoduleTrack, ...] = ()
    try:
        tracking = track_nodules([o for o in observations if o.study_date <= as_of], evaluated_studies=evaluated)
        tracks = tracking.tracks
        run.notes.extend(tracking.notes)
    except Exception as exc:  # keep the studies even if tracking has a bug
        logger.exception("nodule tracking failed")
        run.notes.append(IngestionNote(NoteSeverity.ERROR, NoteCode.MALFORMED, PACS_SYSTEM,
                                       f"nodule tracking failed ({type(exc).__name__}: {exc}); no tracks"))
    return ImagingResult(studies=refs, tracks=tracks, notes=tuple(run.notes), status=_status(run, source))


def _status(run: _Run, source: DicomSource) -> SourceStatus:
    if run.failed == 0:
        return SourceStatus(PACS_SYSTEM, SourceState.OK, source.system)
    if run.answered == 0:
        return SourceStatus(PACS_SYSTEM, SourceState.UNAVAILABLE, f"{source.system}: {run.outage or 'failed'}")
    return SourceStatus(PACS_SYSTEM, SourceState.PARTIAL, f"{source.system}: {run.outage or 'failed'}")


# --- Steps ----------------------------------------------------------------------------------------------------
def _find_studies(run: _Run, patient_ids: Sequence[str], study_uids: Sequence[str],
                  found: dict[str, StudyRecord]) -> None:
    """Fill ``found`` (kept even when the PACS fails half-way)."""
    wanted_ids = [p for p in dict.fromkeys(p.strip() for p in patient_ids if p and p.strip())]
    for patient_id in wanted_ids:
        try:
            records = run.call(f"QIDO-RS studies of patient {patient_id}", run.source.search_studies,
                               patient_id=patient_id)
        except (UpstreamRejected, InvalidInput) as exc:
            run.failed += 1
            run.error(NoteCode.UPSTREAM_REJECTED, PACS_SYSTEM,
                      f"study search for patient {patient_id} refused: {exc}; imaging findings may be incomplete "
                      "(absence of nodules means nothing)")
            continue
        for record in records:
            found.setdefault(record.study_instance_uid, record)
    for uid in dict.fromkeys(u.strip() for u in study_uids if u and u.strip()):
        if uid in found:
            continue
        try:
            records = run.call(f"QIDO-RS study {uid}", run.source.search_studies, study_instance_uid=uid)
        except InvalidInput as exc:
            run.warn(NoteCode.MALFORMED, f"urn:dicom:uid:{uid}", f"ImagingStudy UID is not a DICOM UID: {exc}")
            continue
        except UpstreamRejected as exc:
            run.failed += 1
            run.error(NoteCode.UPSTREAM_REJECTED, f"urn:dicom:uid:{uid}",
                      f"study search refused: {exc}; this study's findings are unknown")
            continue
        if not records:
            run.info(NoteCode.MISSING_VALUE, f"urn:dicom:uid:{uid}",
                     "the EHR names this study (ImagingStudy) but the PACS has no such study")
        for record in records:
            if wanted_ids and record.patient_id and record.patient_id not in wanted_ids:
                run.info(NoteCode.CONFLICT, f"urn:dicom:uid:{uid}",
                         f"study is filed under PACS Patient ID {record.patient_id!r}, not {', '.join(wanted_ids)}; "
                         "used because the EHR links it to the patient")
            found.setdefault(record.study_instance_uid, record)


def _study_observations(run: _Run, cache: ImagingFeatureCache | None, study: StudyRecord,
                        ) -> tuple[list[NoduleObservation], list[tuple[str, date]]]:
    """The nodules reported on one study, and the (study, date) its nodule reports evaluated (usually itself; the
    imaged study when a vendor files its SR in a study of its own)."""
    uid = study.study_instance_uid
    try:
        series = run.call(f"QIDO-RS SR series of study {uid}", run.source.search_series, uid, modality=MODALITY_SR)
    except UpstreamRejected as exc:
        run.failed += 1
        run.warn(NoteCode.UPSTREAM_REJECTED, f"urn:dicom:uid:{uid}", f"SR series search: {exc}")
        return [], []
    observations: list[NoduleObservation] = []
    evaluated: list[tuple[str, date]] = []
    for one in series:
        try:
            instances = run.call(f"QIDO-RS instances of SR series {one.series_instance_uid}",
                                 run.source.search_instances, uid, one.series_instance_uid)
        except UpstreamRejected as exc:
            run.failed += 1
            run.warn(NoteCode.UPSTREAM_REJECTED, f"urn:dicom:uid:{one.series_instance_uid}",
                     f"SR instance search: {exc}")
            continue
        for instance in instances:
            if instance.sop_class_uid is not None and instance.sop_class_uid not in MEASUREMENT_REPORT_SOP_CLASSES:
                continue  # Basic Text SR, Key Object Selection...: no measurements to read
            result = _parsed(run, cache, study, instance)
            if result is None:
                continue
            if result.is_measurement_report:
                assert study.study_date is not None
                evaluated.append((result.study_instance_uid or uid, study.study_date))
            observations.extend(result.observations)
            run.notes.extend(result.notes)
    return observations, evaluated


def _parsed(run: _Run, cache: ImagingFeatureCache | None, study: StudyRecord,
            instance: InstanceRecord) -> SrParseResult | None:
    sop = instance.sop_instance_uid
    where = f"urn:dicom:uid:{sop}"
    if cache is not None:
        try:
            hit = cache.get(sop)
        except Exception as exc:  # the cache is an optimisation: a broken store must not stop ingestion
            logger.warning("imaging feature cache read failed: %s", type(exc).__name__)  # no SQL parameters (UIDs)
            run.info(NoteCode.UPSTREAM_UNAVAILABLE, "imaging-feature-cache",
                     f"cache read failed ({type(exc).__name__}); SR parsed again")
            hit = None
        if hit is not None:
            return hit
    try:
        dataset = run.call(f"WADO-RS SR {sop}", run.source.retrieve_instance, instance.study_instance_uid,
                           instance.series_instance_uid, sop)
    except (UpstreamRejected, NotFound, InvalidInput) as exc:
        run.warn(NoteCode.MALFORMED, where, f"SR could not be retrieved or decoded; no nodules taken from it: {exc}")
        return None
    geometry = _PacsGeometry(run, dataset)
    result = parse_measurement_report(dataset, study_date=study.study_date, geometry=geometry)
    if geometry.incomplete:
        return result  # the PACS failed mid-way: keep what was read, do not cache a parse missing geometry
    if cache is not None:
        try:
            cache.put(result)
        except Exception as exc:
            logger.warning("imaging feature cache write failed: %s", type(exc).__name__)
            run.info(NoteCode.UPSTREAM_UNAVAILABLE, "imaging-feature-cache",
                     f"cache write failed ({type(exc).__name__}); the SR will be parsed again next time")
    return result


class _PacsGeometry:
    """Image geometry for one SR, fetched from the PACS on demand (WADO-RS metadata of its evidence)."""

    def __init__(self, run: _Run, sr: Dataset) -> None:
        self._run = run
        self._evidence: dict[str, tuple[str, str]] = {}
        for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
            for study in sr.get(keyword, []):
                for series in study.get("ReferencedSeriesSequence", []):
                    for ref in series.get("ReferencedSOPSequence", []):
                        self._evidence[str(ref.get("ReferencedSOPInstanceUID", ""))] = (
                            str(study.get("StudyInstanceUID", "")), str(series.get("SeriesInstanceUID", "")))
        self._images: dict[str, ImageGeometry | None] = {}
        self._series_done: set[tuple[str, str]] = set()
        self.incomplete = False

    def image(self, sop_instance_uid: str) -> ImageGeometry | None:
        if sop_instance_uid not in self._images:
            self._images[sop_instance_uid] = self._fetch_image(sop_instance_uid)
        return self._images[sop_instance_uid]

    def slices(self, frame_of_reference_uid: str) -> Sequence[ImageGeometry]:
        for study_uid, series_uid in sorted(set(self._evidence.values())):
            if (study_uid, series_uid) in self._series_done:
                continue
            self._series_done.add((study_uid, series_uid))
            try:
                metadata = self._run.call(f"WADO-RS metadata of series {series_uid}",
                                          self._run.source.retrieve_series_metadata, study_uid, series_uid)
            except (UpstreamRejected, NotFound, InvalidInput) as exc:
                logger.info("series metadata unavailable: %s", exc)
                continue
            except _Outage:
                self.incomplete = True
                return []
            for item in metadata:
                try:
                    geometry = ImageGeometry.from_dataset(item, study_instance_uid=study_uid,
                                                          series_instance_uid=series_uid)
                except (ValueError, TypeError, AttributeError):
                    continue
                self._images.setdefault(geometry.sop_instance_uid, geometry)
        return [g for g in self._images.values()
                if g is not None and g.frame_of_reference_uid == frame_of_reference_uid]

    def _fetch_image(self, sop_instance_uid: str) -> ImageGeometry | None:
        location = self._evidence.get(sop_instance_uid)
        if location is None or not all(location):
            return None
        study_uid, series_uid = location
        try:
            metadata = self._run.call(f"WADO-RS metadata of image {sop_instance_uid}",
                                      self._run.source.retrieve_instance_metadata, study_uid, series_uid,
                                      sop_instance_uid)
        except (UpstreamRejected, NotFound, InvalidInput) as exc:
            logger.info("image metadata unavailable: %s", exc)
            return None
        except _Outage:
            self.incomplete = True
            return None
        try:
            return ImageGeometry.from_dataset(metadata, study_instance_uid=study_uid, series_instance_uid=series_uid)
        except (ValueError, TypeError, AttributeError):
            return None


def _study_ref(record: StudyRecord, source: DicomSource) -> ImagingStudyRef:
    modality = "CT" if "CT" in record.modalities else (record.modalities[0] if record.modalities else "OT")
    return ImagingStudyRef(
        study_instance_uid=record.study_instance_uid, modality=modality, started=record.study_date,
        source=dicom_ref(record.study_instance_uid, record.study_date),
        dicomweb_endpoint=getattr(source, "url", None),
        description=record.description, accession_number=record.accession_number,
    )
