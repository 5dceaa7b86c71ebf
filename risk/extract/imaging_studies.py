"""ImagingStudy → ImagingStudyRef (interop.md §3.6).

- Study Instance UID: the identifier with system ``urn:dicom:uid``, its ``urn:oid:`` prefix stripped.
  A study without one cannot be matched to the PACS: skipped and noted.
- Modality: every ``series[].modality`` and ``ImagingStudy.modality`` code; "CT" when any is CT (the
  service cares about chest CT; a PET/CT is still a CT), else the first one, else "OT" (noted).
- Date: ``started`` (calendar date as written); studies after the as-of date are left out.
- DICOMweb endpoint: the first resolvable ``endpoint`` (study level, then series level): a contained
  Endpoint (``#id``) or a referenced one found among the fetched resources; a WADO-RS connection type is
  preferred. Its ``address`` is the DICOMweb base URL.
- Accession number: the identifier typed ACSN (v2-0203).
- ``entered-in-error`` studies are noted and ignored; ``cancelled`` ones are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Final

from risk import codes
from risk.domain.imaging import ImagingStudyRef
from risk.domain.provenance import NoteCode
from risk.extract.fhirjson import clinical_date, codings, items, obj, resource_key, source_ref
from risk.extract.notes import NoteSink
from risk.features.rules import CT_MODALITY, ENTERED_IN_ERROR, IGNORED_IMAGING_STUDY_STATUSES

OID_PREFIX: Final = "urn:oid:"
WADO_RS: Final = "dicom-wado-rs"
UNKNOWN_MODALITY: Final = "OT"
ACCESSION_TYPE: Final = "ACSN"
"""The identifier type (v2-0203) of the accession number."""


def study_instance_uid(study: Mapping[str, Any]) -> str | None:
    for ident in items(study, "identifier"):
        if isinstance(ident, dict) and ident.get("system") == codes.DICOM_UID:
            value = ident.get("value")
            if isinstance(value, str) and value.strip():
                value = value.strip()
                return value[len(OID_PREFIX):] if value.startswith(OID_PREFIX) else value
    return None


def modalities(study: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for series in items(study, "series"):
        if isinstance(series, dict):
            modality = series.get("modality")
            if isinstance(modality, dict) and isinstance(modality.get("code"), str):
                out.append(modality["code"].strip())
    for m in items(study, "modality"):
        if isinstance(m, dict) and isinstance(m.get("code"), str):
            out.append(m["code"].strip())
    return [m for m in out if m]


def _endpoint_references(study: Mapping[str, Any]) -> list[str]:
    refs = [e.get("reference") for e in items(study, "endpoint") if isinstance(e, dict)]
    for series in items(study, "series"):
        if isinstance(series, dict):
            refs.extend(e.get("reference") for e in items(series, "endpoint") if isinstance(e, dict))
    return [r for r in refs if isinstance(r, str) and r]


def _resolve(reference: str, study: Mapping[str, Any], endpoints: Mapping[str, Mapping[str, Any]]
             ) -> Mapping[str, Any] | None:
    if reference.startswith("#"):
        for contained in items(study, "contained"):
            if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                return contained
        return None
    marker = reference.rfind("Endpoint/")
    return endpoints.get(reference[marker + len("Endpoint/"):].split("/")[0]) if marker >= 0 else None


def dicomweb_endpoint(study: Mapping[str, Any], endpoints: Mapping[str, Mapping[str, Any]]
                      ) -> tuple[str | None, list[str]]:
    """The DICOMweb base URL and the references that could not be resolved."""
    resolved: list[Mapping[str, Any]] = []
    unresolved: list[str] = []
    for reference in _endpoint_references(study):
        endpoint = _resolve(reference, study, endpoints)
        if endpoint is None or not isinstance(endpoint.get("address"), str):
            unresolved.append(reference)
        else:
            resolved.append(endpoint)
    for endpoint in resolved:
        connection = obj(endpoint, "connectionType")
        if connection is not None and connection.get("code") == WADO_RS:
            return str(endpoint["address"]), unresolved
    return (str(resolved[0]["address"]) if resolved else None), unresolved


def _accession(study: Mapping[str, Any]) -> str | None:
    for ident in items(study, "identifier"):
        if isinstance(ident, dict) and "type" in ident and ACCESSION_TYPE in (c for _s, c in codings(ident["type"])):
            value = ident.get("value")
            return value if isinstance(value, str) and value else None
    return None


def extract_imaging_studies(studies: Iterable[Mapping[str, Any]], endpoints: Mapping[str, Mapping[str, Any]],
                            as_of: date, notes: NoteSink) -> tuple[ImagingStudyRef, ...]:
    out: dict[str, ImagingStudyRef] = {}
    for index, study in enumerate(studies):
        ref = resource_key(study, f"#{index}")
        status = study.get("status")
        if status in IGNORED_IMAGING_STUDY_STATUSES:
            if status == ENTERED_IN_ERROR:
                notes.info(NoteCode.ENTERED_IN_ERROR, ref, "ImagingStudy is entered-in-error; ignored.")
            continue
        uid = study_instance_uid(study)
        if uid is None:
            notes.warning(NoteCode.MISSING_VALUE, ref,
                          "ImagingStudy has no urn:dicom:uid identifier: cannot be matched to the PACS; ignored.")
            continue
        started = clinical_date(study.get("started"))
        if started is not None and started > as_of:
            continue
        found = modalities(study)
        modality = CT_MODALITY if CT_MODALITY in found else (found[0] if found else UNKNOWN_MODALITY)
        if not found:
            notes.warning(NoteCode.MISSING_VALUE, ref, "ImagingStudy has no modality; recorded as OT.")
        endpoint, unresolved = dicomweb_endpoint(study, endpoints)
        if unresolved:
            notes.info(NoteCode.MISSING_VALUE, ref, f"endpoint(s) not found: {', '.join(unresolved)}.")
        description = study.get("description")
        if uid in out:
            notes.info(NoteCode.DUPLICATE, ref, f"study {uid} also in {out[uid].source.reference}; counted once.")
            continue
        out[uid] = ImagingStudyRef(study_instance_uid=uid, modality=modality, started=started,
                                   source=source_ref(ref, started), dicomweb_endpoint=endpoint,
                                   description=description if isinstance(description, str) else None,
                                   accession_number=_accession(study))
    return tuple(out.values())
