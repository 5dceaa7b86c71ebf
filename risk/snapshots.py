"""Patient id → PatientSnapshot: the ingestion boundary for one patient.

``build_snapshot`` runs the snapshot queries against a FhirSource (REST, folder, or a CDS prefetch with a
REST fallback), maps the resources (risk/extract), asks the imaging pipeline for the patient's studies
and nodule tracks (matched by the MRNs, which the PACS uses as DICOM PatientID, and by the FHIR
ImagingStudy UIDs), and assembles one immutable snapshot. Nothing raises past this function: an outage,
a timeout or a bad resource becomes a note and a SourceStatus (UNAVAILABLE / PARTIAL), so "the EHR or
PACS could not be checked" is never confused with "no data". Only a programming error in the caller
(e.g. an invalid patient id) raises.

The imaging side is reached through :class:`ImagingLoader`, a small seam: :func:`pacs_imaging` adapts
``risk.imaging.pipeline.load_imaging`` (imported when first used), and tests can pass any callable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Protocol

from risk.deadline import Deadline
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity
from risk.domain.snapshot import PatientSnapshot, SourceState, SourceStatus
from risk.extract.notes import NoteSink
from risk.extract.snapshot import ImagingOutcome, assemble_snapshot, extract_fhir, group_resources
from risk.sources.fhir import PREFETCH_TEMPLATES, FhirSource, fetch_patient_resources

log = logging.getLogger(__name__)

PACS_SYSTEM = "pacs"


class ImagingLoader(Protocol):
    """Loads a patient's imaging (the agreed call into risk.imaging.pipeline, partially applied)."""

    def __call__(self, *, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date,
                 deadline: Deadline) -> ImagingOutcome: ...


def pacs_imaging(source: Any, cache: Any = None) -> ImagingLoader:
    """An ImagingLoader over ``risk.imaging.pipeline.load_imaging(source, cache, ...)``."""

    def load(*, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date,
             deadline: Deadline) -> ImagingOutcome:
        from risk.imaging.pipeline import load_imaging

        result: ImagingOutcome = load_imaging(source, cache, dicom_patient_ids=dicom_patient_ids,
                                              study_uids=study_uids, as_of=as_of, deadline=deadline)
        return result

    return load


def build_snapshot(source: FhirSource, patient_id: str, *, as_of: date, deadline: Deadline,
                   imaging: ImagingLoader | None = None, templates: Mapping[str, str] = PREFETCH_TEMPLATES,
                   max_workers: int = 4) -> PatientSnapshot:
    """Everything known about ``patient_id`` on ``as_of``, from ``source`` and (optionally) the PACS."""
    if getattr(source, "keys_to_fetch", None) == ():
        max_workers = 1  # a prefetch that answers every query: no network, no threads
    fetch = fetch_patient_resources(source, patient_id, deadline=deadline, templates=templates,
                                    max_workers=max_workers)
    notes = NoteSink()
    notes.extend(list(getattr(source, "notes", ())))  # e.g. a prefetch key that held an OperationOutcome
    notes.extend(fetch.notes)
    records = group_resources(fetch.resources, patient_id, notes)
    fhir = extract_fhir(records, as_of)
    outcome: ImagingOutcome | None = None
    statuses = [fetch.status]
    if imaging is not None:
        mrns = fhir.medical_record_numbers
        uids = [s.study_instance_uid for s in fhir.imaging_studies]
        if not mrns and not uids and fetch.status.state is not SourceState.OK:
            statuses.append(SourceStatus(PACS_SYSTEM, SourceState.UNAVAILABLE,
                                         "no identifiers to search the PACS with: the FHIR server did not answer"))
        else:
            try:
                outcome = imaging(dicom_patient_ids=mrns, study_uids=uids, as_of=as_of, deadline=deadline)
            except Exception as exc:  # the ingestion boundary: the PACS part is lost, not the snapshot
                log.exception("imaging pipeline failed for %s", patient_id)
                notes.notes.append(IngestionNote(NoteSeverity.ERROR, NoteCode.UPSTREAM_UNAVAILABLE, PACS_SYSTEM,
                                                 f"imaging could not be loaded ({type(exc).__name__}: {exc}); "
                                                 "absence of nodules means nothing."))
                statuses.append(SourceStatus(PACS_SYSTEM, SourceState.UNAVAILABLE, str(exc) or type(exc).__name__))
    return assemble_snapshot(patient_id, as_of, fhir, imaging=outcome, source_status=statuses, notes=notes.notes)
