"""Imaging: CT studies, nodule observations (one TID 1500 measurement group) and nodule tracks."""

from __future__ import annotations

from dataclasses import field
from datetime import date
from enum import StrEnum

from risk.domain._checks import optional_finite, require_date, require_text
from risk.domain._value import value_type
from risk.domain.provenance import SourceRef
from risk.guidelines.growth import GrowthResult


class NoduleComposition(StrEnum):
    """Lung-RADS / Brock nodule type."""

    SOLID = "solid"
    PART_SOLID = "part_solid"
    NONSOLID = "nonsolid"
    CALCIFIED = "calcified"
    FAT_CONTAINING = "fat_containing"
    UNKNOWN = "unknown"


class Margin(StrEnum):
    SMOOTH = "smooth"
    LOBULATED = "lobulated"
    IRREGULAR = "irregular"
    SPICULATED = "spiculated"
    UNKNOWN = "unknown"


class Lobe(StrEnum):
    RUL = "RUL"
    RML = "RML"
    RLL = "RLL"
    LUL = "LUL"
    LLL = "LLL"

    @property
    def is_upper_lobe(self) -> bool:
        """Brock's "upper lobe" covariate (the lingula belongs to the left upper lobe)."""
        return self in (Lobe.RUL, Lobe.LUL)


class NoduleLocationType(StrEnum):
    """Where the nodule sits, as Lung-RADS distinguishes it."""

    PARENCHYMAL = "parenchymal"
    JUXTAPLEURAL = "juxtapleural"
    AIRWAY_SUBSEGMENTAL = "airway_subsegmental"
    AIRWAY_SEGMENTAL_OR_PROXIMAL = "airway_segmental_or_proximal"


@value_type
class ImagingStudyRef:
    """A CT (or other) study known from FHIR ImagingStudy or a QIDO-RS search."""

    study_instance_uid: str
    modality: str
    started: date | None
    source: SourceRef
    dicomweb_endpoint: str | None = None
    description: str | None = None
    accession_number: str | None = None

    def __post_init__(self) -> None:
        require_text("study_instance_uid", self.study_instance_uid)
        require_text("modality", self.modality)
        require_date("started", self.started, optional=True)


@value_type
class PatientPosition:
    """A point in a DICOM frame of reference (patient coordinates, mm)."""

    x_mm: float
    y_mm: float
    z_mm: float
    frame_of_reference_uid: str

    def __post_init__(self) -> None:
        for name in ("x_mm", "y_mm", "z_mm"):
            optional_finite(name, getattr(self, name))
        require_text("frame_of_reference_uid", self.frame_of_reference_uid)

    def distance_mm(self, other: PatientPosition) -> float:
        return float(((self.x_mm - other.x_mm) ** 2 + (self.y_mm - other.y_mm) ** 2
                      + (self.z_mm - other.z_mm) ** 2) ** 0.5)


@value_type
class NoduleObservation:
    """One nodule measured on one study (one TID 1500 measurement group, or our own analysis).

    ``diameter_mm`` is the longest diameter (Brock's size). ``long_axis_mm``/``short_axis_mm`` give
    the Lung-RADS mean diameter when both are present.
    """

    study_instance_uid: str
    study_date: date
    source: SourceRef
    composition: NoduleComposition = NoduleComposition.UNKNOWN
    diameter_mm: float | None = None
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_mm3: float | None = None
    solid_component_mm: float | None = None
    margin: Margin = Margin.UNKNOWN
    lobe: Lobe | None = None
    location_type: NoduleLocationType = NoduleLocationType.PARENCHYMAL
    position: PatientPosition | None = None
    tracking_uid: str | None = None
    tracking_identifier: str | None = None
    ai_malignancy_probability: float | None = None
    algorithm_name: str | None = None
    algorithm_version: str | None = None
    slice_sop_instance_uid: str | None = None
    series_instance_uid: str | None = None

    def __post_init__(self) -> None:
        require_text("study_instance_uid", self.study_instance_uid)
        require_date("study_date", self.study_date)
        for name in ("diameter_mm", "long_axis_mm", "short_axis_mm", "solid_component_mm"):
            optional_finite(name, getattr(self, name), low=0, high=300, low_inclusive=False)
        optional_finite("volume_mm3", self.volume_mm3, low=0, high=1.5e7, low_inclusive=False)
        optional_finite("ai_malignancy_probability", self.ai_malignancy_probability, low=0, high=1)
        if self.diameter_mm is None and self.long_axis_mm is None and self.volume_mm3 is None:
            raise ValueError('One of "diameter_mm", "long_axis_mm" or "volume_mm3" is required.')
        if (self.long_axis_mm is not None and self.short_axis_mm is not None
                and self.short_axis_mm > self.long_axis_mm + 1e-9):
            raise ValueError('Argument "short_axis_mm" must not exceed "long_axis_mm".')
        if self.solid_component_mm is not None and self.composition not in (
                NoduleComposition.PART_SOLID, NoduleComposition.SOLID, NoduleComposition.UNKNOWN):
            raise ValueError('Argument "solid_component_mm" is only meaningful for part-solid nodules.')

    @property
    def longest_diameter_mm(self) -> float | None:
        return self.diameter_mm if self.diameter_mm is not None else self.long_axis_mm

    @property
    def spiculated(self) -> bool:
        return self.margin is Margin.SPICULATED


class TrackStatus(StrEnum):
    NEW = "new"
    """First seen on the latest study, absent on an earlier one that covered the lungs."""
    PERSISTENT = "persistent"
    """Seen on the latest study and at least one earlier one."""
    RESOLVED = "resolved"
    """Seen earlier but not on the latest study."""
    BASELINE = "baseline"
    """Only one study exists: nothing to compare with."""


class TrackLinkage(StrEnum):
    TRACKING_UID = "tracking_uid"
    """Linked by the DICOM Tracking Unique Identifier (DCM 112040)."""
    POSITION_AND_SIZE = "position_and_size"
    """Linked by position in the frame of reference and size, within documented tolerances."""
    SINGLE = "single"
    """One observation: no linkage needed."""


@value_type
class NoduleTrack:
    """One nodule followed across studies, oldest observation first, with its growth."""

    track_id: str
    observations: tuple[NoduleObservation, ...]
    status: TrackStatus
    linkage: TrackLinkage
    growth: GrowthResult | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        require_text("track_id", self.track_id)
        if not self.observations:
            raise ValueError('Argument "observations" must not be empty.')
        dates = [o.study_date for o in self.observations]
        if dates != sorted(dates):
            raise ValueError('Argument "observations" must be ordered by study date.')

    @property
    def latest(self) -> NoduleObservation:
        return self.observations[-1]

    @property
    def first(self) -> NoduleObservation:
        return self.observations[0]
