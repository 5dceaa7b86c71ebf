"""PatientSnapshot: everything known about one patient on one date, with sources and gaps."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from risk.domain._checks import require_date, require_text
from risk.domain._value import value_type
from risk.domain.clinical import (
    ConditionFact,
    ConditionKind,
    EducationLevel,
    FamilyHistoryFact,
    LabResult,
    ObservedValue,
)
from risk.domain.imaging import ImagingStudyRef, NoduleTrack
from risk.domain.patient import Demographics
from risk.domain.provenance import IngestionNote, NoteSeverity
from risk.domain.smoking import SmokingHistory


class SourceState(StrEnum):
    """Whether a source system answered, so that "no data" and "could not check" differ."""

    OK = "ok"
    PARTIAL = "partial"
    """Some queries failed or timed out; what arrived was used."""
    UNAVAILABLE = "unavailable"
    """Nothing could be read: absence of findings means nothing."""
    NOT_CONFIGURED = "not_configured"


@value_type
class SourceStatus:
    system: str
    state: SourceState
    detail: str | None = None

    def __post_init__(self) -> None:
        require_text("system", self.system)
        if not isinstance(self.state, SourceState):
            raise TypeError('Argument "state" must be a SourceState.')


@value_type
class PatientSnapshot:
    """The inputs to every model and guideline for one patient on ``as_of``.

    Built by risk/extract (FHIR) and risk/imaging (DICOM SR) from any source; immutable. What could
    not be used is in ``notes``; whether each source answered is in ``source_status``.
    """

    patient_id: str
    as_of: date
    demographics: Demographics | None
    smoking: SmokingHistory | None = None
    bmi: ObservedValue | None = None
    education: EducationLevel | None = None
    conditions: tuple[ConditionFact, ...] = ()
    family_history: tuple[FamilyHistoryFact, ...] = ()
    labs: tuple[LabResult, ...] = ()
    imaging_studies: tuple[ImagingStudyRef, ...] = ()
    nodule_tracks: tuple[NoduleTrack, ...] = ()
    notes: tuple[IngestionNote, ...] = ()
    source_status: tuple[SourceStatus, ...] = ()

    def __post_init__(self) -> None:
        require_text("patient_id", self.patient_id)
        require_date("as_of", self.as_of)
        if self.demographics is not None and self.demographics.birth_date > self.as_of:
            raise ValueError('Argument "as_of" must not precede the birth date.')

    @property
    def age_years(self) -> int | None:
        return None if self.demographics is None else self.demographics.age_years(self.as_of)

    def has_condition(self, kind: ConditionKind) -> bool:
        return any(c.kind is kind for c in self.conditions)

    def conditions_of(self, kind: ConditionKind) -> tuple[ConditionFact, ...]:
        return tuple(c for c in self.conditions if c.kind is kind)

    @property
    def family_history_lung_cancer(self) -> bool:
        return any(f.first_degree for f in self.family_history)

    def state_of(self, system: str) -> SourceState:
        for s in self.source_status:
            if s.system == system:
                return s.state
        return SourceState.NOT_CONFIGURED

    @property
    def has_errors(self) -> bool:
        return any(n.severity is NoteSeverity.ERROR for n in self.notes)

    @property
    def ct_studies(self) -> tuple[ImagingStudyRef, ...]:
        return tuple(s for s in self.imaging_studies if s.modality == "CT")

    @property
    def last_ct_date(self) -> date | None:
        dates = [s.started for s in self.ct_studies if s.started is not None]
        return max(dates) if dates else None
