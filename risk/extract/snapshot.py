"""Assembly: one patient's FHIR resources (+ the imaging result) → PatientSnapshot.

``group_resources`` sorts whatever a source returned (a prefetch, REST searches, a folder of bundles)
into the resource types ingestion reads, drops resources that belong to another patient (noted) and the
same resource seen twice (silently). ``extract_fhir`` runs every extractor; ``assemble_snapshot`` merges
the FHIR part with the imaging part (studies matched by Study Instance UID) and the sources' status.
Nothing here raises on bad input: every problem is a note on the snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol, TypeVar

from risk.domain.clinical import ConditionFact, EducationLevel, FamilyHistoryFact, LabResult, ObservedValue
from risk.domain.imaging import ImagingStudyRef, NoduleTrack
from risk.domain.patient import Demographics
from risk.domain.provenance import IngestionNote, NoteCode
from risk.domain.smoking import SmokingHistory
from risk.domain.snapshot import PatientSnapshot, SourceStatus
from risk.extract.conditions import extract_conditions
from risk.extract.education import extract_education
from risk.extract.family import extract_family_history, family_history_from_conditions
from risk.extract.fhirjson import reference_id, resource_key
from risk.extract.imaging_studies import extract_imaging_studies
from risk.extract.labs import extract_labs
from risk.extract.notes import NoteSink
from risk.extract.observations import ObservationFacts, classify_observations
from risk.extract.patient import PatientFacts, extract_patient
from risk.extract.smoking import extract_smoking
from risk.extract.vitals import extract_bmi

log = logging.getLogger(__name__)

Resource = Mapping[str, Any]
T = TypeVar("T")

# The field that names the patient, per resource type read by ingestion.
PATIENT_FIELD = {
    "Observation": "subject",
    "Condition": "subject",
    "ImagingStudy": "subject",
    "FamilyMemberHistory": "patient",
}


@dataclass(slots=True)
class FhirRecords:
    """One patient's resources, by type (the input of every extractor)."""

    patient: Resource | None = None
    observations: list[Resource] = field(default_factory=list)
    conditions: list[Resource] = field(default_factory=list)
    family_history: list[Resource] = field(default_factory=list)
    imaging_studies: list[Resource] = field(default_factory=list)
    endpoints: dict[str, Resource] = field(default_factory=dict)


def group_resources(resources: Iterable[Resource], patient_id: str, notes: NoteSink) -> FhirRecords:
    records = FhirRecords()
    seen: set[tuple[str, str]] = set()
    lists: dict[str, list[Resource]] = {
        "Observation": records.observations,
        "Condition": records.conditions,
        "FamilyMemberHistory": records.family_history,
        "ImagingStudy": records.imaging_studies,
    }
    own_reference = f"Patient/{patient_id}"
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            notes.warning(NoteCode.MALFORMED, f"resource #{index}", "not a JSON object; ignored.")
            continue
        rtype = resource.get("resourceType")
        rid = resource.get("id")
        if not isinstance(rtype, str):
            rtype = "Resource"
        if isinstance(rid, str) and rid:
            if (rtype, rid) in seen:
                continue
            seen.add((rtype, rid))
        target = lists.get(rtype)
        if target is not None:
            subject = resource.get(PATIENT_FIELD[rtype])
            ref = subject.get("reference") if isinstance(subject, dict) else None
            if ref != own_reference:
                owner = reference_id(subject, "Patient")
                if owner is not None and owner != patient_id:
                    notes.warning(NoteCode.MALFORMED, resource_key(resource, f"#{index}"),
                                  f"belongs to Patient/{owner}, not Patient/{patient_id}; ignored.")
                    continue
            target.append(resource)
        elif rtype == "Patient":
            if rid in (patient_id, None) and records.patient is None:
                records.patient = resource
        elif rtype == "Endpoint":
            if isinstance(rid, str):
                records.endpoints[rid] = resource
        elif rtype == "OperationOutcome":
            notes.warning(NoteCode.UPSTREAM_REJECTED, resource_key(resource, f"#{index}"), _outcome_text(resource))
    return records


def _outcome_text(outcome: Resource) -> str:
    texts = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, dict):
            detail = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            texts.append(str(detail))
    return "OperationOutcome: " + ("; ".join(texts) if texts else "no detail")


@dataclass(frozen=True, slots=True)
class FhirExtraction:
    """Everything the FHIR side contributes to a snapshot."""

    demographics: Demographics | None
    medical_record_numbers: tuple[str, ...]
    smoking: SmokingHistory | None
    bmi: ObservedValue | None
    education: EducationLevel | None
    conditions: tuple[ConditionFact, ...]
    family_history: tuple[FamilyHistoryFact, ...]
    labs: tuple[LabResult, ...]
    imaging_studies: tuple[ImagingStudyRef, ...]
    notes: tuple[IngestionNote, ...]


def extract_fhir(records: FhirRecords, as_of: date) -> FhirExtraction:
    """Run every extractor. An unexpected error in one section loses that section only (an ERROR note)."""
    notes = NoteSink()
    patient = _safe(notes, "Patient", lambda: extract_patient(records.patient, as_of, notes), PatientFacts(None, ()))
    facts = _safe(notes, "Observation", lambda: classify_observations(records.observations, as_of, notes),
                  ObservationFacts({}))
    return FhirExtraction(
        demographics=patient.demographics,
        medical_record_numbers=patient.medical_record_numbers,
        smoking=_safe(notes, "smoking history", lambda: extract_smoking(facts, notes), None),
        bmi=_safe(notes, "BMI", lambda: extract_bmi(facts, notes), None),
        education=_safe(notes, "education", lambda: extract_education(facts), None),
        conditions=_safe(notes, "Condition", lambda: extract_conditions(records.conditions, as_of, notes), ()),
        family_history=_safe(notes, "FamilyMemberHistory",
                             lambda: extract_family_history(records.family_history, as_of, notes)
                             + family_history_from_conditions(records.conditions, as_of, notes), ()),
        labs=_safe(notes, "labs", lambda: extract_labs(facts), ()),
        imaging_studies=_safe(notes, "ImagingStudy", lambda: extract_imaging_studies(
            records.imaging_studies, records.endpoints, as_of, notes), ()),
        notes=tuple(notes.notes),
    )


def _safe(notes: NoteSink, section: str, run: Callable[[], T], default: T) -> T:
    try:
        return run()
    except Exception as exc:  # the ingestion boundary: one section lost, never the snapshot
        log.exception("could not map %s", section)
        notes.error(NoteCode.MALFORMED, section, f"could not be mapped ({type(exc).__name__}: {exc}); left out.")
        return default


class ImagingOutcome(Protocol):
    """What the imaging pipeline returns (risk.imaging.pipeline.ImagingResult satisfies it)."""

    @property
    def studies(self) -> tuple[ImagingStudyRef, ...]: ...
    @property
    def tracks(self) -> tuple[NoduleTrack, ...]: ...
    @property
    def notes(self) -> tuple[IngestionNote, ...]: ...
    @property
    def status(self) -> SourceStatus: ...


def merge_studies(fhir: Sequence[ImagingStudyRef], pacs: Sequence[ImagingStudyRef]) -> tuple[ImagingStudyRef, ...]:
    """FHIR ImagingStudy refs first (they carry the endpoint), completed from the PACS; PACS-only appended."""
    by_uid = {s.study_instance_uid: s for s in pacs}
    out: list[ImagingStudyRef] = []
    for study in fhir:
        other = by_uid.pop(study.study_instance_uid, None)
        if other is not None:
            study = replace(study,
                            started=study.started or other.started,
                            modality=other.modality if study.modality == "OT" else study.modality,
                            dicomweb_endpoint=study.dicomweb_endpoint or other.dicomweb_endpoint,
                            description=study.description or other.description,
                            accession_number=study.accession_number or other.accession_number)
        out.append(study)
    out.extend(by_uid.values())
    out.sort(key=lambda s: (s.started or date.min, s.study_instance_uid))
    return tuple(out)


def assemble_snapshot(patient_id: str, as_of: date, fhir: FhirExtraction | None, *,
                      imaging: ImagingOutcome | None = None, source_status: Sequence[SourceStatus] = (),
                      notes: Sequence[IngestionNote] = ()) -> PatientSnapshot:
    """Combine the FHIR extraction, the imaging result and the sources' status into one snapshot."""
    all_notes: list[IngestionNote] = list(notes)
    statuses = list(source_status)
    studies: tuple[ImagingStudyRef, ...] = fhir.imaging_studies if fhir is not None else ()
    tracks: tuple[NoduleTrack, ...] = ()
    if fhir is not None:
        all_notes.extend(fhir.notes)
    studies = merge_studies(studies, imaging.studies if imaging is not None else ())
    if imaging is not None:
        tracks = imaging.tracks
        all_notes.extend(imaging.notes)
        statuses.append(imaging.status)
    if fhir is None:
        return PatientSnapshot(patient_id=patient_id, as_of=as_of, demographics=None, imaging_studies=studies,
                               nodule_tracks=tracks, notes=tuple(all_notes), source_status=tuple(statuses))
    return PatientSnapshot(
        patient_id=patient_id, as_of=as_of, demographics=fhir.demographics, smoking=fhir.smoking, bmi=fhir.bmi,
        education=fhir.education, conditions=fhir.conditions, family_history=fhir.family_history, labs=fhir.labs,
        imaging_studies=studies, nodule_tracks=tracks, notes=tuple(all_notes), source_status=tuple(statuses),
    )


def snapshot_from_resources(resources: Iterable[Resource], *, patient_id: str, as_of: date,
                            source_status: Sequence[SourceStatus] = ()) -> PatientSnapshot:
    """The FHIR-only snapshot of one patient from a flat list of resources (tests, the Bulk cross-check)."""
    notes = NoteSink()
    records = group_resources(resources, patient_id, notes)
    return assemble_snapshot(patient_id, as_of, extract_fhir(records, as_of), source_status=source_status,
                             notes=notes.notes)
