"""The seam between the app and the project's pipeline: launch → PatientSnapshot → Assessment.

:class:`PipelineAssessor` reads the patient's record with the project's FHIR source
(:class:`risk.sources.fhir_rest.RestFhirSource`) on the launch's own token, the imaging through the
configured PACS (:mod:`risk.sources.dicomweb`, the service's credentials: the browser never talks to the PACS),
assembles the snapshot (:mod:`risk.snapshots`) and assesses it (:mod:`risk.assess`, with the fusion model when
one is loaded). The app renders the result and never recomputes clinical logic.

Results are cached per browser session for ``ttl_s`` seconds, so moving between pages does not re-read
the EHR; "Reload data" drops the entry.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from risk.config import Settings
from risk.deadline import Deadline
from risk.domain import Assessment, PatientSnapshot
from smart_app.fhir import PatientHeader, SmartFhirClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AssessRequest:
    fhir_base: str
    patient_id: str
    token_provider: Callable[[], str]
    as_of: date
    deadline: Deadline


@dataclass(frozen=True, slots=True)
class AssessedPatient:
    snapshot: PatientSnapshot
    assessment: Assessment
    computed_at: datetime
    header: PatientHeader | None = None
    header_error: str | None = None


class Assessor(Protocol):
    def header(self, request: AssessRequest) -> PatientHeader:
        """The patient banner's data (name, birth date, sex, MRN) from the FHIR Patient."""
        ...

    def assess(self, request: AssessRequest) -> tuple[PatientSnapshot, Assessment]: ...


class PipelineAssessor:
    """The real pipeline: FHIR (REST, the launch's token) + PACS → snapshot → assessment."""

    def __init__(self, settings: Settings, *, database: Callable[[], Any] | None = None) -> None:
        self._settings = settings
        self._database = database
        self._dicom: Any = None
        self._dicom_lock = threading.Lock()
        self._predictor: Any = None
        self._predictor_loaded = False
        self._imaging_cache: Any = None

    def _dicom_source(self) -> Any:
        from risk.sources.dicomweb import open_dicom_source

        with self._dicom_lock:
            if self._dicom is None:
                self._dicom = open_dicom_source(self._settings.dicomweb)
            return self._dicom

    def dicom_source(self) -> Any:
        return self._dicom_source()

    def _fusion_predictor(self) -> Any:
        """The configured fusion model (``settings.models.version``), or None for published models only."""
        if not self._predictor_loaded:
            models = self._settings.models
            if models.version is not None:
                from fusion_models.runtime import load_predictor

                try:
                    self._predictor = load_predictor(models.registry_dir, models.version)
                except Exception:
                    log.exception("fusion model %s could not be loaded from %s; published models only",
                                  models.version, models.registry_dir)
            self._predictor_loaded = True
        return self._predictor

    def _feature_cache(self) -> Any:
        if self._imaging_cache is None and self._database is not None:
            from risk.imaging.cache import ImagingFeatureCache

            db = self._database()
            if db is not None:
                self._imaging_cache = ImagingFeatureCache(db)
        return self._imaging_cache

    def header(self, request: AssessRequest) -> PatientHeader:
        fs = self._settings.fhir
        client = SmartFhirClient(request.fhir_base, request.token_provider, timeout_s=fs.timeout_s,
                                 retries=fs.retries, backoff_s=fs.backoff_s)
        try:
            return client.read_patient(request.patient_id)
        finally:
            client.close()

    def assess(self, request: AssessRequest) -> tuple[PatientSnapshot, Assessment]:
        from risk.assess import assess
        from risk.snapshots import build_snapshot, pacs_imaging
        from risk.sources.fhir_rest import RestFhirSource

        fs = self._settings.fhir
        source = RestFhirSource(request.fhir_base, token=request.token_provider, timeout_s=fs.timeout_s,
                                retries=fs.retries, backoff_s=fs.backoff_s, page_size=fs.page_size)
        try:
            dicom = self._dicom_source()
            snapshot = build_snapshot(source, request.patient_id, as_of=request.as_of, deadline=request.deadline,
                                      imaging=pacs_imaging(dicom, self._feature_cache()) if dicom is not None else None)
        finally:
            source.close()
        assessment = assess(snapshot, fusion=self._fusion_predictor())
        return snapshot, assessment


class AssessmentCache:
    """Per-session results, least-recently-used first out, each valid for ``ttl_s`` seconds."""

    def __init__(self, *, ttl_s: float = 300.0, max_entries: int = 256) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._data: OrderedDict[str, AssessedPatient] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> AssessedPatient | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if (datetime.now(UTC) - hit.computed_at).total_seconds() > self._ttl_s:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit

    def put(self, key: str, value: AssessedPatient) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
