"""The imaging-feature cache: an SR is parsed once, its observations kept in the store by SOP Instance UID.

Parsing a TID 1500 SR costs tens of milliseconds (highdicom, ~75 ms for 20 groups; performance.md §5) plus the
WADO-RS retrievals of the SR and its image geometry: far too much for the CDS hot path. The pipeline asks the
cache first; a row written by an older ``PARSER_VERSION`` counts as a miss and is overwritten. The cache is an
optimisation: when the store fails, ingestion goes on without it and says so in a note.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from risk.domain import (
    IngestionNote,
    Lobe,
    Margin,
    NoduleComposition,
    NoduleLocationType,
    NoduleObservation,
    NoteCode,
    NoteSeverity,
    PatientPosition,
    SourceKind,
    SourceRef,
)
from risk.imaging.sr import PARSER_VERSION, SrParseResult
from risk.store.db import Database
from risk.store.imaging_cache import ImagingFeatureCacheRow


class ImagingFeatureCache:
    """Parsed SRs in the service's database (SQLite or PostgreSQL), keyed by SOP Instance UID."""

    def __init__(self, database: Database, *, parser_version: str = PARSER_VERSION) -> None:
        self._db = database
        self.parser_version = parser_version

    def get(self, sop_instance_uid: str) -> SrParseResult | None:
        """The cached parse of that SR, or None when absent or written by another parser version."""
        with self._db.session() as session:
            row = session.get(ImagingFeatureCacheRow, sop_instance_uid)
            if row is None or row.parser_version != self.parser_version:
                return None
            return SrParseResult(
                sop_instance_uid=row.sop_instance_uid, study_instance_uid=row.study_instance_uid,
                is_measurement_report=row.is_measurement_report,
                observations=tuple(observation_from_json(o) for o in row.observations),
                notes=tuple(note_from_json(n) for n in row.notes), parser_version=row.parser_version,
            )

    def put(self, result: SrParseResult) -> None:
        """Store (or replace) the parse of one SR. Writers of the same SR at once (a burst of hook calls for a patient
        not cached yet, in one process or several) do not fail: the one that loses the insert updates the row."""
        try:
            self._put(result)
        except IntegrityError:
            self._put(result)  # the row exists now: this is an update

    def _put(self, result: SrParseResult) -> None:
        with self._db.session() as session:
            row = session.get(ImagingFeatureCacheRow, result.sop_instance_uid)
            if row is None:
                row = ImagingFeatureCacheRow(sop_instance_uid=result.sop_instance_uid)
                session.add(row)
            row.study_instance_uid = result.study_instance_uid
            row.parser_version = result.parser_version
            row.parsed_at = datetime.now(UTC)
            row.is_measurement_report = result.is_measurement_report
            row.observations = [observation_to_json(o) for o in result.observations]
            row.notes = [n.to_json() for n in result.notes]

    def invalidate(self, sop_instance_uid: str) -> None:
        with self._db.session() as session:
            session.execute(delete(ImagingFeatureCacheRow).where(
                ImagingFeatureCacheRow.sop_instance_uid == sop_instance_uid))

    def purge_stale(self) -> int:
        """Delete rows written by other parser versions; returns how many."""
        with self._db.session() as session:
            result = session.execute(delete(ImagingFeatureCacheRow).where(
                ImagingFeatureCacheRow.parser_version != self.parser_version))
            return int(getattr(result, "rowcount", 0) or 0)

    def sop_instance_uids(self, study_instance_uid: str) -> list[str]:
        with self._db.session() as session:
            return list(session.scalars(select(ImagingFeatureCacheRow.sop_instance_uid).where(
                ImagingFeatureCacheRow.study_instance_uid == study_instance_uid)))


# --- JSON form of the domain values (stable: stored rows outlive processes) ----------------------------------------
_ENUMS: dict[str, Any] = {"composition": NoduleComposition, "margin": Margin, "lobe": Lobe,
                          "location_type": NoduleLocationType}


def observation_to_json(observation: NoduleObservation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(observation):
        value = getattr(observation, f.name)
        if value is None:
            continue
        if isinstance(value, date):
            out[f.name] = value.isoformat()
        elif isinstance(value, SourceRef):
            out[f.name] = value.to_json()
        elif isinstance(value, PatientPosition):
            out[f.name] = {"x_mm": value.x_mm, "y_mm": value.y_mm, "z_mm": value.z_mm,
                           "frame_of_reference_uid": value.frame_of_reference_uid}
        elif f.name in _ENUMS:
            out[f.name] = str(value.value)
        else:
            out[f.name] = value
    return out


def observation_from_json(data: dict[str, Any]) -> NoduleObservation:
    kwargs: dict[str, Any] = dict(data)
    kwargs["study_date"] = date.fromisoformat(data["study_date"])
    source = data["source"]
    kwargs["source"] = SourceRef(SourceKind(source["kind"]), source["reference"],
                                 date.fromisoformat(source["effective"]) if source.get("effective") else None)
    if "position" in data:
        kwargs["position"] = PatientPosition(**data["position"])
    for name, enum in _ENUMS.items():
        if name in data:
            kwargs[name] = enum(data[name])
    return NoduleObservation(**kwargs)


def note_from_json(data: dict[str, str]) -> IngestionNote:
    return IngestionNote(NoteSeverity(data["severity"]), NoteCode(data["code"]), data["source"], data["message"])
