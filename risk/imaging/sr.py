"""Read lung-nodule findings from a DICOM SR TID 1500 Measurement Report (vendor AI output).

``parse_measurement_report(dataset)`` returns one :class:`~risk.domain.NoduleObservation` per nodule
measurement group (TID 1410 planar or TID 1411 volumetric) and an :class:`~risk.domain.IngestionNote` for
everything it could not use as-is. It never raises: a broken SR yields notes, not an exception.

How it reads (shared/reference/interop.md §5):

1. highdicom's template parser (``Comprehensive3DSR``/``ComprehensiveSR``/``EnhancedSR.from_dataset``,
   ``MeasurementReport.get_planar_roi_measurement_groups`` / ``get_volumetric_roi_measurement_groups``) gives
   tracking identifier and UID, finding, finding sites, measurements and qualitative evaluations.
2. When highdicom rejects the tree (no root Template Identifier 1500, a NUM without a value, an unknown value
   type, an Extensible SR, groups it cannot classify), the content tree is walked directly
   (``highdicom.sr.utils.find_content_items`` semantics: concept names, value types, nesting) and the same
   fields are read, more tolerantly. Either way the ROI (SCOORD/SCOORD3D), the algorithm identification and a
   relationship-type check come from the walk.

Vendor quirks handled (interop.md §5.5), each leaving a note: groups or root without Template Identifier;
legacy SNOMED-RT (``SRT``) codes normalised to SCT (``risk.codes.SRT_TO_SCT``, then pydicom's SNOMED-RT map);
missing or malformed Tracking Unique Identifiers (the observation is kept, tracking falls back to position
and size); SCOORD (image coordinates, placed in patient coordinates with the referenced image's geometry)
versus SCOORD3D (patient coordinates); private coding schemes; relationship types other than TID 1500
requires (values used); NUM items without a value; units other than mm / mm3 (converted where the unit is
known, refused otherwise); values outside physical ranges.

Field mapping: Diameter (SCT 81827009) → ``diameter_mm``; Long Axis / Short Axis (SCT 103339001/103340004);
Volume (SCT 118565006); solid component (RadLex RID50154) → ``solid_component_mm``; Probability of cancer
(DCM 111047, a fraction; % converted) → ``ai_malignancy_probability``; solidness (RadLex RID46010 →
RID5741/RID46011/RID46016) → composition (a Ground glass opacity finding, DCM 112120, implies non-solid when no
solidness is given); margin (RadLex RID5972 → RID5714/RID5711/RID5715/RID5713, or DCM 112136 Spiculated) →
margin; finding site → lobe (CID 6170 lobe + Laterality, or a pre-coordinated lateralised lobe code).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset

from risk import codes
from risk.domain import (
    IngestionNote,
    Lobe,
    Margin,
    NoduleComposition,
    NoduleObservation,
    NoteCode,
    NoteSeverity,
    PatientPosition,
    dicom_ref,
)
from risk.imaging.geometry import GeometrySource, ImageGeometry, nearest_slice

logger = logging.getLogger(__name__)

PARSER_VERSION = "tid1500-1"
"""Bump when the observations produced from the same SR change: cached parses of older versions are redone."""

ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
EXTENSIBLE_SR = "1.2.840.10008.5.1.4.1.1.88.35"
MEASUREMENT_REPORT_SOP_CLASSES = frozenset({ENHANCED_SR, COMPREHENSIVE_SR, COMPREHENSIVE_3D_SR, EXTENSIBLE_SR})
"""SR storage classes that can carry TID 1500 (Basic Text SR cannot hold NUM/SCOORD items)."""

_Concept = tuple[str, str, str]
"""(coding scheme designator, code value, code meaning), SRT already normalised to SCT."""

_NODULE_FINDINGS = {codes.NODULE.code, codes.MASS.code, codes.GROUND_GLASS_OPACITY.code, codes.MICRONODULE.code}
_KNOWN_SCHEMES = {"SCT", "SRT", "DCM", "LN", "RADLEX", "UCUM", "UMLS", "FMA", "NCIt", "RFC5646"}
_ROI_CONCEPTS = {codes.IMAGE_REGION.code, codes.VOLUME_SURFACE.code, codes.REFERENCED_SEGMENT.code,
                 codes.REGION_IN_SPACE.code}
_LENGTH_MM = {"mm": 1.0, "cm": 10.0, "um": 0.001, "m": 1000.0}
_VOLUME_MM3 = {"mm3": 1.0, "cm3": 1000.0, "mL": 1000.0, "ml": 1000.0, "uL": 1.0, "ul": 1.0}
_FRACTION = {"1": 1.0, "{ratio}": 1.0, "{probability}": 1.0, "%": 0.01, "": 1.0}
_LENGTH_CONCEPTS = {codes.DIAMETER.code: "diameter_mm", codes.LONG_AXIS.code: "long_axis_mm",
                    codes.SHORT_AXIS.code: "short_axis_mm", codes.SOLID_COMPONENT_DIAMETER.code: "solid_component_mm"}
_LENGTH_LIMITS_MM = (0.0, 300.0)
_VOLUME_LIMITS_MM3 = (0.0, 1.5e7)

_SOLIDNESS = {codes.SOLID.code: NoduleComposition.SOLID, codes.PART_SOLID.code: NoduleComposition.PART_SOLID,
              codes.NON_SOLID.code: NoduleComposition.NONSOLID}
_MARGINS = {codes.MARGIN_SMOOTH.code: Margin.SMOOTH, codes.MARGIN_LOBULATED.code: Margin.LOBULATED,
            codes.MARGIN_IRREGULAR.code: Margin.IRREGULAR, codes.MARGIN_SPICULATED.code: Margin.SPICULATED,
            codes.SPICULATED.code: Margin.SPICULATED}

# Lobes. CID 6170 codes the lobe as a lobe concept plus Laterality; pre-coordinated lateralised codes also occur.
# The pre-coordinated lateralised lobes are risk.codes.LOBES; "Upper lobe of lung" (45653009) and "Lower lobe of
# lung" need a Laterality to name a lobe.
_LOBE_BY_CODE = {c.code: Lobe(name) for name, c in codes.LOBES.items()}
_UPPER = codes.UPPER_LOBE_OF_LUNG.code
_LATERALISED = {
    (_UPPER, codes.RIGHT.code): Lobe.RUL, (_UPPER, codes.LEFT.code): Lobe.LUL,
    (codes.LOWER_LOBE_OF_LUNG.code, codes.RIGHT.code): Lobe.RLL,
    (codes.LOWER_LOBE_OF_LUNG.code, codes.LEFT.code): Lobe.LLL,
    (codes.MIDDLE_LOBE_OF_LUNG.code, codes.RIGHT.code): Lobe.RML,
    (codes.MIDDLE_LOBE_OF_RIGHT_LUNG.code, codes.RIGHT.code): Lobe.RML,
}
_NON_LOBE_SITES = {codes.LUNG.code, codes.LOBE_OF_LUNG.code}
_NEEDS_LATERALITY = {codes.UPPER_LOBE_OF_LUNG.code, codes.LOWER_LOBE_OF_LUNG.code, codes.MIDDLE_LOBE_OF_LUNG.code}

# Relationship types TID 1500/1410/1411 require for concepts found directly in a measurement group (Finding
# Category is CONTAINS in current TID 1410 and HAS CONCEPT MOD in older text: not checked).
_EXPECTED_RELATIONSHIP = {
    codes.TRACKING_IDENTIFIER.code: "HAS OBS CONTEXT",
    codes.TRACKING_UNIQUE_IDENTIFIER.code: "HAS OBS CONTEXT",
    codes.FINDING_SITE.code: "HAS CONCEPT MOD",
    codes.ALGORITHM_NAME.code: "HAS CONCEPT MOD",
    codes.ALGORITHM_VERSION.code: "HAS CONCEPT MOD",
    codes.MEASUREMENT_METHOD.code: "HAS CONCEPT MOD",
    codes.FINDING.code: "CONTAINS",
}


@dataclass(frozen=True, slots=True)
class SrParseResult:
    """What one SR instance says about nodules, and what could not be used."""

    sop_instance_uid: str
    study_instance_uid: str | None
    is_measurement_report: bool
    """The SR is a nodule measurement report (its study counts as evaluated, even with no nodules)."""
    observations: tuple[NoduleObservation, ...]
    notes: tuple[IngestionNote, ...]
    parser_version: str = PARSER_VERSION


# --- Intermediate, reader-neutral form of one measurement group ------------------------------------------------
@dataclass(slots=True)
class _Roi:
    value_type: str
    graphic_type: str
    points: np.ndarray
    frame_of_reference_uid: str | None = None
    referenced_sop_instance_uid: str | None = None


@dataclass(slots=True)
class _Group:
    index: int
    template_id: str | None = None
    tracking_identifier: str | None = None
    tracking_uid: str | None = None
    finding: _Concept | None = None
    sites: list[tuple[_Concept, _Concept | None]] = field(default_factory=list)
    """(finding site, its laterality)"""
    rois: list[_Roi] = field(default_factory=list)
    has_segment_reference: bool = False
    measurements: list[tuple[_Concept, float | None, str | None]] = field(default_factory=list)
    """(name, value or None when the NUM has none, UCUM unit)"""
    qualitative: list[tuple[_Concept, _Concept]] = field(default_factory=list)
    algorithm_name: str | None = None
    algorithm_version: str | None = None


class _Notes:
    """Collects notes for one SR; repeated notes of one kind are merged into one with a count."""

    def __init__(self, sop_instance_uid: str) -> None:
        self.source = f"urn:dicom:uid:{sop_instance_uid}"
        self._notes: list[IngestionNote] = []
        self._merged: dict[tuple[NoteSeverity, NoteCode, str], list[str]] = {}

    def add(self, severity: NoteSeverity, code: NoteCode, message: str, group: int | None = None) -> None:
        source = self.source if group is None else f"{self.source}#group-{group}"
        self._notes.append(IngestionNote(severity, code, source, message))

    def merge(self, severity: NoteSeverity, code: NoteCode, headline: str, example: str) -> None:
        self._merged.setdefault((severity, code, headline), []).append(example)

    def all(self) -> tuple[IngestionNote, ...]:
        merged = []
        for (severity, code, headline), examples in self._merged.items():
            counted = Counter(examples)
            shown = "; ".join(f"{e} (x{n})" if n > 1 else e for e, n in list(counted.items())[:12])
            more = f"; and {len(counted) - 12} more" if len(counted) > 12 else ""
            merged.append(IngestionNote(severity, code, self.source, f"{headline}: {shown}{more}"))
        return (*self._notes, *merged)


# --- Public entry point ---------------------------------------------------------------------------------------
def parse_measurement_report(dataset: Dataset, *, study_date: date | None = None,
                             geometry: GeometrySource | None = None,
                             reader: Literal["highdicom", "walk"] = "highdicom") -> SrParseResult:
    """Nodule observations from one SR instance, with notes; never raises.

    ``study_date`` is used when the SR has no StudyDate (e.g. the QIDO-RS study date); ``geometry`` places SCOORD
    regions in patient coordinates and finds the key slice of SCOORD3D points (without it, SCOORD positions are
    left empty, with a note). ``dataset`` may be modified (highdicom converts its content items in place).
    ``reader="walk"`` skips highdicom's parser (same observations on conformant SRs, several times faster:
    bench/bench_sr.py).
    """
    sop_uid = str(dataset.get("SOPInstanceUID", "") or "unknown-sop-instance")
    notes = _Notes(sop_uid)
    try:
        return _parse(dataset, sop_uid, study_date, geometry, notes, reader)
    except Exception as exc:  # the ingestion boundary: one broken SR never sinks the rest
        logger.exception("SR %s could not be parsed", sop_uid)
        notes.add(NoteSeverity.WARNING, NoteCode.MALFORMED,
                  f"SR could not be read ({type(exc).__name__}: {exc}); no nodules taken from it")
        return SrParseResult(sop_uid, _text(dataset.get("StudyInstanceUID")), False, (), notes.all())


def _parse(dataset: Dataset, sop_uid: str, study_date: date | None, geometry: GeometrySource | None,
           notes: _Notes, reader: str) -> SrParseResult:
    study_uid = _text(dataset.get("StudyInstanceUID"))
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in MEASUREMENT_REPORT_SOP_CLASSES:
        notes.add(NoteSeverity.INFO, NoteCode.UNSUPPORTED,
                  f"SOP class {sop_class or '(none)'} cannot carry a TID 1500 measurement report; skipped")
        return SrParseResult(sop_uid, study_uid, False, (), notes.all())
    root = _concept(dataset, notes)
    group_items = list(_measurement_group_items(dataset))
    is_report = root is not None and root[1] == codes.IMAGING_MEASUREMENT_REPORT.code
    if not is_report:
        if not group_items:
            notes.add(NoteSeverity.INFO, NoteCode.UNSUPPORTED,
                      f"SR title {_show(root)} is not an Imaging Measurement Report (DCM 126000) and holds no "
                      "measurement groups; skipped")
            return SrParseResult(sop_uid, study_uid, False, (), notes.all())
        notes.add(NoteSeverity.INFO, NoteCode.MALFORMED,
                  f"SR title {_show(root)} is not Imaging Measurement Report (DCM 126000); its measurement "
                  "groups were read")
    if _template_id(dataset) != "1500":
        notes.add(NoteSeverity.INFO, NoteCode.MALFORMED,
                  "root content item has no Template Identifier 1500 (TID 1500 assumed from its content)")
    if study_uid is None:
        notes.add(NoteSeverity.WARNING, NoteCode.MALFORMED, "SR has no StudyInstanceUID; no nodules taken from it")
        return SrParseResult(sop_uid, None, False, (), notes.all())
    effective = _da(dataset.get("StudyDate")) or study_date
    if effective is None:
        notes.add(NoteSeverity.WARNING, NoteCode.MISSING_VALUE,
                  "SR has no StudyDate and the study date is unknown; no nodules taken from it")
        return SrParseResult(sop_uid, study_uid, False, (), notes.all())

    walked = [_walk_group(item, i, notes) for i, item in enumerate(group_items, start=1)]
    evidence = _evidence_series(dataset)
    evidence_studies = {study for study, _series in evidence.values() if study}
    if evidence_studies and study_uid not in evidence_studies:
        if len(evidence_studies) == 1:
            (image_study,) = evidence_studies
            notes.add(NoteSeverity.INFO, NoteCode.CONFLICT,
                      f"SR is filed in study {study_uid} but measures images of study {image_study}; findings are "
                      "attributed to the imaged study")
            study_uid = image_study
        else:
            notes.add(NoteSeverity.INFO, NoteCode.CONFLICT,
                      f"SR is filed in study {study_uid} but measures images of {len(evidence_studies)} other "
                      "studies; findings are attributed to the SR's study")
    groups = _groups_via_highdicom(dataset, walked, notes) if reader == "highdicom" else None  # converts in place
    if groups is None:
        groups = walked
    observations: list[NoduleObservation] = []
    for group in groups:
        observation = _observation(group, dataset, sop_uid, study_uid, effective, geometry, evidence, notes)
        if observation is not None:
            observations.append(observation)
    return SrParseResult(sop_uid, study_uid, True, tuple(observations), notes.all())


# --- highdicom reading ----------------------------------------------------------------------------------------
def _groups_via_highdicom(dataset: Dataset, walked: list[_Group], notes: _Notes) -> list[_Group] | None:
    """Groups read by highdicom's TID 1500 parser, completed by the walk; None when highdicom rejects the tree."""
    import highdicom as hd

    readers: dict[str, Any] = {ENHANCED_SR: hd.sr.EnhancedSR, COMPREHENSIVE_SR: hd.sr.ComprehensiveSR,
               COMPREHENSIVE_3D_SR: hd.sr.Comprehensive3DSR}
    reader = readers.get(str(dataset.SOPClassUID))
    reason: str | None = None
    if reader is None:
        reason = "highdicom has no reader for Extensible SR"
    elif _template_id(dataset) != "1500":
        reason = "no root Template Identifier 1500"  # highdicom would refuse it (after a costly conversion)
    elif any(value is None for group in walked for _name, value, _unit in group.measurements):
        reason = "a NUM without a value"  # highdicom raises on it
    else:
        try:
            # copy=False: no deep copy of the tree (the walk has already read everything else it needs)
            content = reader.from_dataset(dataset, copy=False).content
            if not isinstance(content, hd.sr.MeasurementReport):
                reason = "the root is not a TID 1500 Measurement Report to highdicom"
            else:
                parsed = [*content.get_planar_roi_measurement_groups(),
                          *content.get_volumetric_roi_measurement_groups()]
                if len(parsed) != len(walked):
                    reason = (f"highdicom classified {len(parsed)} of {len(walked)} measurement groups "
                              "(groups without a single image region are not planar or volumetric to it)")
        except Exception as exc:  # highdicom raises AttributeError/ValueError/IndexError/... on vendor trees
            reason = f"{type(exc).__name__}: {_short(str(exc))}"
    if reason is not None:
        notes.add(NoteSeverity.INFO, NoteCode.MALFORMED,
                  f"highdicom's TID 1500 parser rejected the SR ({reason}); the content tree was read directly")
        return None
    quiet = _Notes("quiet")  # the walk has already noted every code it normalised
    unused = list(walked)
    out: list[_Group] = []
    for position, hd_group in enumerate(parsed):
        tracking_uid, tracking_identifier = hd_group.tracking_uid, hd_group.tracking_identifier
        measurements = hd_group.get_measurements()
        base = _pair(None if tracking_uid is None else str(tracking_uid), tracking_identifier, measurements, unused,
                     walked[position])
        group = _Group(index=base.index, template_id=base.template_id, rois=base.rois,
                       has_segment_reference=base.has_segment_reference, algorithm_name=base.algorithm_name,
                       algorithm_version=base.algorithm_version)
        group.tracking_identifier = tracking_identifier or base.tracking_identifier
        group.tracking_uid = base.tracking_uid
        group.finding = _norm_concept(hd_group.finding_type, quiet) if hd_group.finding_type else base.finding
        for site in hd_group.finding_sites:
            concept = _norm_concept(site.value, quiet)
            if concept is not None:
                laterality = _norm_concept(site.laterality, quiet) if site.laterality is not None else None
                group.sites.append((concept, laterality))
        if not group.sites:
            group.sites = base.sites
        for measurement in measurements:
            name = _norm_concept(measurement.name, quiet)
            if name is not None:
                unit = str(measurement.unit.value) if measurement.unit is not None else None
                group.measurements.append((name, float(measurement.value), unit))
        for evaluation in hd_group.get_qualitative_evaluations():
            name, value = _norm_concept(evaluation.name, quiet), _norm_concept(evaluation.value, quiet)
            if name is not None and value is not None:
                group.qualitative.append((name, value))
        out.append(group)
    return sorted(out, key=lambda g: g.index)


def _pair(uid: str | None, identifier: str | None, measurements: Sequence[Any], unused: list[_Group],
          fallback: _Group) -> _Group:
    """The walked group that is the same content item as a highdicom group (highdicom lists planar groups first)."""
    values = sorted((str(m.name.value), round(float(m.value), 3)) for m in measurements)
    for matcher in (
        lambda w: w.tracking_uid == uid and _walked_values(w) == values,
        lambda w: w.tracking_uid == uid and w.tracking_identifier == identifier,
    ):
        for candidate in unused:
            if matcher(candidate):
                unused.remove(candidate)
                return candidate
    if fallback in unused:
        unused.remove(fallback)
    return fallback


def _walked_values(group: _Group) -> list[tuple[str, float]]:
    return sorted((raw_code, round(v, 3)) for (_scheme, raw_code, _meaning), v, _unit in group.measurements
                  if v is not None)


# --- Content-tree walk ----------------------------------------------------------------------------------------
def _measurement_group_items(dataset: Dataset) -> Iterator[Dataset]:
    """Measurement Group containers (DCM 125007) anywhere in the tree, in document order."""
    def visit(items: Iterable[Dataset]) -> Iterator[Dataset]:
        for item in items:
            concept = _raw_concept(item)
            if item.get("ValueType") == "CONTAINER" and concept is not None \
                    and concept[1] == codes.MEASUREMENT_GROUP.code:
                yield item
            elif "ContentSequence" in item:
                yield from visit(item.ContentSequence)
    yield from visit(dataset.get("ContentSequence", []))


def _walk_group(item: Dataset, index: int, notes: _Notes) -> _Group:
    group = _Group(index=index, template_id=_template_id(item))
    if group.template_id is None:
        notes.merge(NoteSeverity.INFO, NoteCode.MALFORMED,
                    "measurement groups without Template Identifier (a single-region group is read as TID 1410)",
                    f"group {index}")
    for child in item.get("ContentSequence", []):
        name = _concept(child, notes)
        value_type = str(child.get("ValueType", ""))
        relationship = str(child.get("RelationshipType", ""))
        if name is None:
            notes.merge(NoteSeverity.WARNING, NoteCode.MALFORMED, "content items without a concept name skipped",
                        f"group {index} {value_type or '?'} item")
            continue
        expected = _EXPECTED_RELATIONSHIP.get(name[1])
        if expected is None and (value_type in ("NUM", "SCOORD", "SCOORD3D", "IMAGE") or name[1] in _ROI_CONCEPTS):
            expected = "CONTAINS"
        if expected is not None and relationship != expected:
            notes.merge(NoteSeverity.INFO, NoteCode.MALFORMED,
                        "content items with a relationship type other than TID 1500 requires (values used)",
                        f"group {index} {name[2]}: {relationship or '(none)'}, expected {expected}")
        code = name[1]
        if code == codes.TRACKING_IDENTIFIER.code:
            group.tracking_identifier = _text(child.get("TextValue"))
        elif code == codes.TRACKING_UNIQUE_IDENTIFIER.code:
            group.tracking_uid = _text(child.get("UID"))
        elif code == codes.FINDING.code:
            group.finding = _coded_value(child, notes)
        elif code == codes.FINDING_SITE.code:
            site = _coded_value(child, notes)
            if site is not None:
                group.sites.append((site, _laterality(child, notes)))
        elif code == codes.ALGORITHM_NAME.code:
            group.algorithm_name = _text(child.get("TextValue"))
            group.algorithm_version = group.algorithm_version or _algorithm_version(child)
        elif code == codes.ALGORITHM_VERSION.code:
            group.algorithm_version = _text(child.get("TextValue"))
        elif code == codes.REFERENCED_SEGMENT.code or (value_type == "IMAGE" and code in _ROI_CONCEPTS):
            group.has_segment_reference = True
        elif value_type in ("SCOORD", "SCOORD3D"):
            roi = _roi(child)
            if roi is not None:
                group.rois.append(roi)
            else:
                notes.merge(NoteSeverity.WARNING, NoteCode.MALFORMED, "spatial coordinates without graphic data",
                            f"group {index}")
        elif value_type == "NUM":
            value, unit = _numeric(child)
            group.measurements.append((name, value, unit))
        elif value_type == "CODE":
            value_concept = _coded_value(child, notes)
            if value_concept is not None:
                group.qualitative.append((name, value_concept))
        elif code in _ROI_CONCEPTS:
            group.has_segment_reference = True
    # Volume surfaces and regions may be nested one level down (e.g. under a Volume Surface container).
    if not group.rois:
        for child in item.get("ContentSequence", []):
            for nested in child.get("ContentSequence", []):
                if nested.get("ValueType") in ("SCOORD", "SCOORD3D"):
                    roi = _roi(nested)
                    if roi is not None:
                        group.rois.append(roi)
    return group


def _roi(item: Dataset) -> _Roi | None:
    data = item.get("GraphicData")
    graphic_type = str(item.get("GraphicType", ""))
    if data is None or not graphic_type:
        return None
    points = np.asarray([float(v) for v in data], dtype=float)
    if item.get("ValueType") == "SCOORD3D":
        if points.size % 3:
            return None
        return _Roi("SCOORD3D", graphic_type, points.reshape(-1, 3),
                    frame_of_reference_uid=_text(item.get("ReferencedFrameOfReferenceUID")))
    if points.size % 2:
        return None
    referenced: str | None = None
    for child in item.get("ContentSequence", []):
        for ref in child.get("ReferencedSOPSequence", []):
            referenced = referenced or _text(ref.get("ReferencedSOPInstanceUID"))
    return _Roi("SCOORD", graphic_type, points.reshape(-1, 2), referenced_sop_instance_uid=referenced)


def _numeric(item: Dataset) -> tuple[float | None, str | None]:
    values = item.get("MeasuredValueSequence") or []
    if not values:
        return None, None
    measured = values[0]
    unit_items = measured.get("MeasurementUnitsCodeSequence") or []
    unit = _text(unit_items[0].get("CodeValue")) if unit_items else None
    raw = measured.get("FloatingPointValue")
    if raw is None:
        raw = measured.get("NumericValue")
    try:
        value = float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        value = None
    return value, unit


def _laterality(item: Dataset, notes: _Notes) -> _Concept | None:
    for child in item.get("ContentSequence", []):
        name = _raw_concept(child)
        if name is not None and name[1] == codes.LATERALITY.code:
            return _coded_value(child, notes)
    return None


def _algorithm_version(item: Dataset) -> str | None:
    for child in item.get("ContentSequence", []):
        name = _raw_concept(child)
        if name is not None and name[1] == codes.ALGORITHM_VERSION.code:
            return _text(child.get("TextValue"))
    return None


def _template_id(item: Dataset) -> str | None:
    sequence = item.get("ContentTemplateSequence") or []
    return _text(sequence[0].get("TemplateIdentifier")) if sequence else None


def _evidence_series(dataset: Dataset) -> dict[str, tuple[str, str]]:
    """SOP Instance UID → (Study, Series) of every image the SR names as evidence."""
    out: dict[str, tuple[str, str]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in dataset.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for ref in series.get("ReferencedSOPSequence", []):
                    sop = _text(ref.get("ReferencedSOPInstanceUID"))
                    if sop:
                        out[sop] = (str(study.get("StudyInstanceUID", "")), str(series.get("SeriesInstanceUID", "")))
    return out


# --- Codes ----------------------------------------------------------------------------------------------------
def _raw_concept(item: Dataset) -> _Concept | None:
    sequence = item.get("ConceptNameCodeSequence") or []
    return _code_item(sequence[0]) if sequence else None


def _concept(item: Dataset, notes: _Notes) -> _Concept | None:
    concept = _raw_concept(item)
    return _normalise(concept, notes) if concept is not None else None


def _coded_value(item: Dataset, notes: _Notes) -> _Concept | None:
    sequence = item.get("ConceptCodeSequence") or []
    concept = _code_item(sequence[0]) if sequence else None
    return _normalise(concept, notes) if concept is not None else None


def _code_item(item: Dataset) -> _Concept | None:
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
    if not value:
        return None
    return (str(item.get("CodingSchemeDesignator", "")).strip(), str(value).strip(),
            str(item.get("CodeMeaning", "")).strip())


def _norm_concept(coded: Any, notes: _Notes) -> _Concept | None:
    if coded is None:
        return None
    return _normalise((str(coded.scheme_designator), str(coded.value), str(coded.meaning)), notes)


def _normalise(concept: _Concept, notes: _Notes) -> _Concept:
    scheme, value, meaning = concept
    if scheme == "SRT":
        mapped = codes.SRT_TO_SCT.get(value) or _pydicom_srt_to_sct(value)
        if mapped is not None:
            notes.merge(NoteSeverity.INFO, NoteCode.CODE_NORMALISED,
                        "legacy SNOMED-RT (SRT) codes normalised to SCT", f"{value}→{mapped} ({meaning})")
            return ("SCT", mapped, meaning)
    if scheme not in _KNOWN_SCHEMES:
        notes.merge(NoteSeverity.INFO, NoteCode.UNKNOWN_CODE, "codes from private or unknown coding schemes",
                    f"({value}, {scheme or '(none)'}, {meaning!r})")
    return concept


def _pydicom_srt_to_sct(value: str) -> str | None:
    try:
        from pydicom.sr._snomed_dict import mapping
    except ImportError:  # a private module of pydicom: tolerate its disappearance
        return None
    mapped = mapping.get("SRT", {}).get(value)
    return str(mapped) if mapped else None


# --- Group → observation --------------------------------------------------------------------------------------
def _observation(group: _Group, dataset: Dataset, sop_uid: str, study_uid: str, study_date: date,
                 geometry: GeometrySource | None, evidence: dict[str, tuple[str, str]],
                 notes: _Notes) -> NoduleObservation | None:
    n = group.index
    if group.finding is None:
        notes.merge(NoteSeverity.INFO, NoteCode.MISSING_VALUE, "measurement groups without a Finding read as nodules",
                    f"group {n}")
    elif group.finding[1] not in _NODULE_FINDINGS:
        if group.finding[0] in ("SCT", "DCM"):
            notes.add(NoteSeverity.INFO, NoteCode.UNSUPPORTED,
                      f"finding {_show(group.finding)} is not a lung nodule; group skipped", n)
            return None
        notes.add(NoteSeverity.INFO, NoteCode.UNKNOWN_CODE,
                  f"finding {_show(group.finding)} is in an unknown scheme; read as a nodule", n)

    values: dict[str, float] = {}
    probability: float | None = None
    seen: set[str] = set()
    for name, value, unit in group.measurements:
        code = name[1]
        if value is None:
            notes.add(NoteSeverity.WARNING, NoteCode.MISSING_VALUE,
                      f"{name[2] or code} has no numeric value (NUM without Measured Value); not used", n)
            continue
        if code in seen and code in (*_LENGTH_CONCEPTS, codes.VOLUME.code, codes.PROBABILITY_OF_CANCER.code):
            notes.add(NoteSeverity.INFO, NoteCode.DUPLICATE, f"{name[2] or code} given twice; the first was used", n)
            continue
        seen.add(code)
        if code in _LENGTH_CONCEPTS:
            converted = _convert(value, unit, _LENGTH_MM, name, "mm", n, notes)
            if converted is not None and _in_range(converted, _LENGTH_LIMITS_MM, name, "mm", n, notes):
                values[_LENGTH_CONCEPTS[code]] = converted
        elif code == codes.VOLUME.code:
            converted = _convert(value, unit, _VOLUME_MM3, name, "mm3", n, notes)
            if converted is not None and _in_range(converted, _VOLUME_LIMITS_MM3, name, "mm3", n, notes):
                values["volume_mm3"] = converted
        elif code == codes.PROBABILITY_OF_CANCER.code:
            converted = _convert(value, unit or "", _FRACTION, name, "1", n, notes)
            if converted is not None and _in_range(converted, (0.0, 1.0), name, "", n, notes, low_inclusive=True):
                probability = converted
        else:
            notes.merge(NoteSeverity.INFO, NoteCode.UNSUPPORTED, "measurements not used by the service",
                        f"{name[2] or code} ({name[0]} {code})")

    composition = NoduleComposition.UNKNOWN
    margin = Margin.UNKNOWN
    for name, answer in group.qualitative:
        if name[1] == codes.SOLIDNESS.code:
            if answer[1] in _SOLIDNESS:
                composition = _SOLIDNESS[answer[1]]
            else:
                notes.add(NoteSeverity.INFO, NoteCode.UNKNOWN_CODE, f"solidness {_show(answer)} not recognised", n)
        elif name[1] == codes.MARGIN.code or answer[1] == codes.SPICULATED.code:
            if answer[1] in _MARGINS:
                margin = _MARGINS[answer[1]]
            else:
                notes.add(NoteSeverity.INFO, NoteCode.UNKNOWN_CODE, f"margin {_show(answer)} not recognised", n)
        elif name[1] in (codes.FINDINGS_CATEGORY.code, codes.FINDING.code, codes.FINDING_SITE.code):
            continue
        else:
            notes.merge(NoteSeverity.INFO, NoteCode.UNSUPPORTED, "qualitative evaluations not used by the service",
                        f"{name[2] or name[1]} = {answer[2] or answer[1]}")
    if composition is NoduleComposition.UNKNOWN and group.finding is not None \
            and group.finding[1] == codes.GROUND_GLASS_OPACITY.code:
        composition = NoduleComposition.NONSOLID

    long_axis, short_axis = values.get("long_axis_mm"), values.get("short_axis_mm")
    if long_axis is not None and short_axis is not None and short_axis > long_axis:
        notes.add(NoteSeverity.WARNING, NoteCode.CONFLICT,
                  f"Short Axis {short_axis:g} mm exceeds Long Axis {long_axis:g} mm; Short Axis not used", n)
        values.pop("short_axis_mm")
    if "solid_component_mm" in values and composition is NoduleComposition.NONSOLID:
        notes.add(NoteSeverity.WARNING, NoteCode.CONFLICT,
                  "a solid component is given for a non-solid nodule; solid component not used", n)
        values.pop("solid_component_mm")

    tracking_uid = group.tracking_uid
    if tracking_uid is not None and not _valid_uid(tracking_uid):
        notes.add(NoteSeverity.WARNING, NoteCode.MALFORMED,
                  f"Tracking Unique Identifier {tracking_uid!r} is not a valid UID; not used", n)
        tracking_uid = None
    if tracking_uid is None:
        notes.merge(NoteSeverity.INFO, NoteCode.MISSING_VALUE,
                    "measurement groups without a Tracking Unique Identifier (tracked by position and size)",
                    f"group {n}")

    position, slice_uid, series_uid = _place(group, geometry, evidence, notes)
    try:
        return NoduleObservation(
            study_instance_uid=study_uid, study_date=study_date, source=dicom_ref(sop_uid, study_date),
            composition=composition, margin=margin, lobe=_lobe(group, notes), position=position,
            tracking_uid=tracking_uid, tracking_identifier=group.tracking_identifier,
            ai_malignancy_probability=probability, algorithm_name=group.algorithm_name,
            algorithm_version=group.algorithm_version, slice_sop_instance_uid=slice_uid,
            series_instance_uid=series_uid, diameter_mm=values.get("diameter_mm"),
            long_axis_mm=values.get("long_axis_mm"), short_axis_mm=values.get("short_axis_mm"),
            volume_mm3=values.get("volume_mm3"), solid_component_mm=values.get("solid_component_mm"),
        )
    except (ValueError, TypeError) as exc:
        notes.add(NoteSeverity.WARNING, NoteCode.MISSING_VALUE if "required" in str(exc) else NoteCode.MALFORMED,
                  f"nodule group not usable: {exc}", n)
        return None


def _convert(value: float, unit: str | None, table: dict[str, float], name: _Concept, target: str, group: int,
             notes: _Notes) -> float | None:
    factor = table.get(unit if unit is not None else "")
    if factor is None:
        notes.add(NoteSeverity.WARNING, NoteCode.UNIT_MISMATCH,
                  f"{name[2] or name[1]} in unit {unit!r} cannot be converted to {target!r}; not used", group)
        return None
    if factor != 1.0:
        notes.merge(NoteSeverity.INFO, NoteCode.UNIT_CONVERTED, "values converted to the service's units",
                    f"{name[2] or name[1]} {unit}→{target or 'fraction'}")
    return value * factor


def _in_range(value: float, limits: tuple[float, float], name: _Concept, unit: str, group: int, notes: _Notes,
              *, low_inclusive: bool = False) -> bool:
    low, high = limits
    ok = (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        notes.add(NoteSeverity.WARNING, NoteCode.OUT_OF_RANGE,
                  f"{name[2] or name[1]} = {value:g} {unit} is outside {low:g}-{high:g}; not used", group)
    return ok


def _lobe(group: _Group, notes: _Notes) -> Lobe | None:
    for site, laterality in group.sites:
        if laterality is not None and (site[1], laterality[1]) in _LATERALISED:
            return _LATERALISED[(site[1], laterality[1])]
        if site[1] in _LOBE_BY_CODE:
            return _LOBE_BY_CODE[site[1]]
    for site, _laterality_code in group.sites:
        if site[1] in _NEEDS_LATERALITY:
            notes.add(NoteSeverity.INFO, NoteCode.MISSING_VALUE,
                      f"finding site {_show(site)} has no laterality: lobe unknown", group.index)
        elif site[1] not in _NON_LOBE_SITES:
            notes.add(NoteSeverity.INFO, NoteCode.UNKNOWN_CODE, f"finding site {_show(site)} is not a lung lobe",
                      group.index)
    return None


def _place(group: _Group, geometry: GeometrySource | None, evidence: dict[str, tuple[str, str]],
           notes: _Notes) -> tuple[PatientPosition | None, str | None, str | None]:
    """Centre of the ROI in patient coordinates, and the key slice (SOP, series) when it can be found."""
    n = group.index
    if not group.rois:
        if group.has_segment_reference:
            notes.merge(NoteSeverity.INFO, NoteCode.UNSUPPORTED,
                        "nodules located only by a segmentation reference (no position; SEG not read)", f"group {n}")
        else:
            notes.merge(NoteSeverity.INFO, NoteCode.MISSING_VALUE, "nodules without spatial coordinates",
                        f"group {n}")
        return None, None, None
    centres: list[tuple[np.ndarray, str, ImageGeometry | None]] = []
    for roi in group.rois:
        centre = _centre(roi.points, roi.graphic_type)
        if roi.value_type == "SCOORD3D":
            if not roi.frame_of_reference_uid:
                notes.add(NoteSeverity.WARNING, NoteCode.MALFORMED,
                          "SCOORD3D without Referenced Frame of Reference UID; position not used", n)
                continue
            centres.append((centre, roi.frame_of_reference_uid, None))
            continue
        image = geometry.image(roi.referenced_sop_instance_uid) if (
            geometry is not None and roi.referenced_sop_instance_uid) else None
        if image is None:
            notes.add(NoteSeverity.INFO, NoteCode.MISSING_VALUE,
                      f"SCOORD on image {roi.referenced_sop_instance_uid or '(none referenced)'} could not be placed "
                      "in patient coordinates (image geometry unavailable); position not used", n)
            continue
        centres.append((image.to_patient(centre.reshape(1, 2))[0], image.frame_of_reference_uid, image))
    if not centres:
        return None, None, None
    frames = {frame for _, frame, _ in centres}
    if len(frames) > 1:
        notes.add(NoteSeverity.WARNING, NoteCode.CONFLICT,
                  "ROI regions lie in different frames of reference; position not used", n)
        return None, None, None
    mean = np.mean([c for c, _, _ in centres], axis=0)
    frame = frames.pop()
    position = PatientPosition(float(mean[0]), float(mean[1]), float(mean[2]), frame)
    # Key slice: the referenced image nearest the centre (SCOORD), else the evidence slice through it (SCOORD3D).
    images = [img for _, _, img in centres if img is not None]
    if images:
        key = min(images, key=lambda img: img.distance_to_plane_mm(mean))
        series = key.series_instance_uid or evidence.get(key.sop_instance_uid, ("", ""))[1] or None
        return position, key.sop_instance_uid, series
    if geometry is not None:
        key_slice = nearest_slice(geometry.slices(frame), mean, frame)
        if key_slice is not None:
            return position, key_slice.sop_instance_uid, key_slice.series_instance_uid or None
    return position, None, None


def _centre(points: np.ndarray, graphic_type: str) -> np.ndarray:
    """Centre of a graphic: the point; a circle's first point; else the mean of distinct vertices."""
    if graphic_type == "CIRCLE":
        return np.asarray(points[0], dtype=float)
    if graphic_type in ("POLYGON", "POLYLINE") and len(points) > 1 and np.allclose(points[0], points[-1]):
        points = points[:-1]
    return np.asarray(points, dtype=float).mean(axis=0)


# --- Small helpers --------------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _da(value: Any) -> date | None:
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _valid_uid(value: str) -> bool:
    from pydicom.uid import RE_VALID_UID

    return len(value) <= 64 and RE_VALID_UID.match(value) is not None


def _show(concept: _Concept | None) -> str:
    if concept is None:
        return "(none)"
    scheme, value, meaning = concept
    return f"({value}, {scheme}, {meaning!r})"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."
