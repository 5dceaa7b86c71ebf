"""Small synthetic CT series and vendor-style TID 1500 SRs, built with pydicom and highdicom, for tests.

``make_ct_series`` writes real geometry (IPP/IOP/PixelSpacing/FrameOfReference) and pixel data;
``make_sr`` builds a highdicom Comprehensive 3D SR with one measurement group per :class:`NoduleSpec`, the way
vendor AI products do (interop.md §5.3). The ``strip_*``/``to_srt``/... helpers inject the vendor quirks of
interop.md §5.5 into a finished SR.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes as dcodes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from risk import codes

UID_PREFIX = "1.2.826.0.1.3680043.8.498."


@dataclass
class NoduleSpec:
    """One nodule as a vendor AI would report it."""

    centre_mm: tuple[float, float, float]
    diameter_mm: float | None = 8.0
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_mm3: float | None = None
    solid_component_mm: float | None = None
    solidness: codes.Code | None = codes.SOLID
    margin: codes.Code | None = None
    lobe: str | None = "RUL"
    lobe_style: str = "project"
    """"project": the codes.LOBES constant; "cid6170": lobe concept + Laterality (DICOM CID 6170 + CID 244)."""
    probability: float | None = None
    tracking_uid: str | None = None
    tracking_identifier: str = "Nodule 1"
    roi: str = "point3d"
    """"point3d" (SCOORD3D POINT), "circle2d" (SCOORD CIRCLE on the nearest slice), "volumetric2d" (TID 1411
    with per-slice SCOORD polylines)."""
    algorithm: tuple[str, str] = ("LungNoduleAI", "2.3.1")
    extra_measurements: list[tuple[codes.Code, float, str]] = field(default_factory=list)


def make_ct_series(*, patient_id: str = "LC-TEST-1", study_date: date = date(2024, 1, 10),
                   study_instance_uid: str | None = None, frame_of_reference_uid: str | None = None,
                   n_slices: int = 12, size: int = 32, spacing_mm: float = 1.0, slice_mm: float = 2.5,
                   origin_mm: tuple[float, float, float] = (-16.0, -16.0, -15.0)) -> list[Dataset]:
    study_instance_uid = study_instance_uid or generate_uid(prefix=UID_PREFIX)
    series_uid = generate_uid(prefix=UID_PREFIX)
    frame_uid = frame_of_reference_uid or generate_uid(prefix=UID_PREFIX)
    out = []
    for i in range(n_slices):
        ds = Dataset()
        sop = generate_uid(prefix=UID_PREFIX)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Test^Patient", "19600101", "M"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_instance_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime = study_date.strftime("%Y%m%d"), "101010"
        ds.SeriesDate, ds.ContentDate = ds.StudyDate, ds.StudyDate
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC1", ""
        ds.StudyDescription = "SYNTHETIC LDCT - not for clinical use"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, i + 1
        ds.Manufacturer, ds.PositionReferenceIndicator = "Synthetic", ""
        ds.ImagePositionPatient = [origin_mm[0], origin_mm[1], origin_mm[2] + i * slice_mm]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [spacing_mm, spacing_mm], slice_mm
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        pixels = np.full((size, size), 1024 - 850, np.int16)  # lung parenchyma, -850 HU
        pixels[: size // 4, :] = 24  # air above the chest, -1000 HU
        ds.PixelData = pixels.tobytes()
        out.append(ds)
    return out


def _lobe_site(spec: NoduleSpec) -> hd.sr.FindingSite:
    if spec.lobe is None:
        return hd.sr.FindingSite(anatomic_location=codes.LUNG.dicom())
    if spec.lobe_style == "cid6170":
        lobe_code = {"RUL": codes.UPPER_LOBE_OF_LUNG, "LUL": codes.UPPER_LOBE_OF_LUNG,
                     "RML": codes.MIDDLE_LOBE_OF_RIGHT_LUNG, "RLL": codes.LOWER_LOBE_OF_LUNG,
                     "LLL": codes.LOWER_LOBE_OF_LUNG}[spec.lobe]
        side = codes.RIGHT if spec.lobe.startswith("R") else codes.LEFT
        return hd.sr.FindingSite(anatomic_location=lobe_code.dicom(), laterality=side.dicom())
    return hd.sr.FindingSite(anatomic_location=codes.LOBES[spec.lobe].dicom())


def _slice_at(ct: Sequence[Dataset], z_mm: float) -> Dataset:
    return min(ct, key=lambda d: abs(float(d.ImagePositionPatient[2]) - z_mm))


def _image_point(ds: Dataset, x_mm: float, y_mm: float) -> tuple[float, float]:
    """Patient (x, y) → SCOORD image coordinates (column, row) for an axial slice with identity orientation."""
    ipp, spacing = ds.ImagePositionPatient, ds.PixelSpacing
    return ((x_mm - float(ipp[0])) / float(spacing[1]) + 0.5, (y_mm - float(ipp[1])) / float(spacing[0]) + 0.5)


def _group(spec: NoduleSpec, ct: Sequence[Dataset]) -> (hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
                                                         | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations):
    tracking = hd.sr.TrackingIdentifier(identifier=spec.tracking_identifier, uid=spec.tracking_uid or hd.UID())
    measurements = []
    for concept, value, unit in (
        (codes.DIAMETER, spec.diameter_mm, codes.UNIT_MM), (codes.LONG_AXIS, spec.long_axis_mm, codes.UNIT_MM),
        (codes.SHORT_AXIS, spec.short_axis_mm, codes.UNIT_MM), (codes.VOLUME, spec.volume_mm3, codes.UNIT_MM3),
        (codes.SOLID_COMPONENT_DIAMETER, spec.solid_component_mm, codes.UNIT_MM),
        (codes.PROBABILITY_OF_CANCER, spec.probability, codes.UNIT_ONE),
        *spec.extra_measurements,
    ):
        if value is not None:
            measurements.append(hd.sr.Measurement(name=concept.dicom(), value=value,
                                                  unit=hd.sr.CodedConcept(unit, "UCUM", unit)))
    evaluations = []
    if spec.solidness is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(name=codes.SOLIDNESS.dicom(), value=spec.solidness.dicom()))
    if spec.margin is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(name=codes.MARGIN.dicom(), value=spec.margin.dicom()))
    common = dict(tracking_identifier=tracking, finding_type=codes.NODULE.dicom(),
                  finding_category=codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE.dicom(), finding_sites=[_lobe_site(spec)],
                  algorithm_id=hd.sr.AlgorithmIdentification(name=spec.algorithm[0], version=spec.algorithm[1]),
                  measurements=measurements, qualitative_evaluations=evaluations)
    x, y, z = spec.centre_mm
    if spec.roi == "point3d":
        region = hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=np.array([[x, y, z]]),
                                     frame_of_reference_uid=ct[0].FrameOfReferenceUID)
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)
    radius = (spec.diameter_mm or spec.long_axis_mm or 6.0) / 2
    if spec.roi == "circle2d":
        image = _slice_at(ct, z)
        c, r = _image_point(image, x, y)
        region2d = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
                                     graphic_data=np.array([[c, r], [c + radius / float(image.PixelSpacing[1]), r]]),
                                     source_image=hd.sr.SourceImageForRegion.from_source_image(image))
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region2d, **common)
    if spec.roi == "volumetric2d":
        regions = []
        slices = sorted(ct, key=lambda d: abs(float(d.ImagePositionPatient[2]) - z))[:3]
        for image in slices:
            c, r = _image_point(image, x, y)
            step = radius / float(image.PixelSpacing[1])
            polygon = np.array([[c - step, r], [c, r - step], [c + step, r], [c, r + step], [c - step, r]])
            regions.append(hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=polygon,
                                             source_image=hd.sr.SourceImageForRegion.from_source_image(image)))
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_regions=regions, **common)
    raise ValueError(f"unknown roi kind {spec.roi!r}")


def make_sr(ct: Sequence[Dataset], nodules: Sequence[NoduleSpec], *, sop_instance_uid: str | None = None,
            series_instance_uid: str | None = None) -> Dataset:
    """A vendor-AI TID 1500 Comprehensive 3D SR about ``ct`` with one measurement group per nodule."""
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
            observer_type=dcodes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(),
                                                                                      name="LungNoduleAI"))),
        procedure_reported=codes.CT_UNSPECIFIED_BODY_REGION.dicom(),
        imaging_measurements=[_group(spec, ct) for spec in nodules],
        title=codes.IMAGING_MEASUREMENT_REPORT.dicom(),
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(ct), content=report, series_number=900,
        series_instance_uid=series_instance_uid or generate_uid(prefix=UID_PREFIX),
        sop_instance_uid=sop_instance_uid or generate_uid(prefix=UID_PREFIX), instance_number=1,
        manufacturer="LungNoduleAI Inc.", series_description="SYNTHETIC AI nodule report - not for clinical use",
    )
    return roundtrip(sr)


def roundtrip(ds: Dataset) -> Dataset:
    """Write and read back, so that a test sees what a PACS or a file would give (plain pydicom Datasets)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


def write(folder: Path, datasets: Sequence[Dataset]) -> list[Path]:
    """Write ``<folder>/<Study>/<Series>/<SOP>.dcm`` and return the paths."""
    paths = []
    for ds in datasets:
        path = folder / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# --- Vendor quirks (interop.md §5.5) ----------------------------------------------------------------------------
def groups(sr: Dataset) -> list[Dataset]:
    return list(_walk(sr, lambda i: _concept(i) == codes.MEASUREMENT_GROUP.code))


def _concept(item: Dataset) -> str | None:
    seq = item.get("ConceptNameCodeSequence") or []
    return str(seq[0].CodeValue) if seq else None


def _walk(item: Dataset, keep: Callable[[Dataset], bool]) -> Iterator[Dataset]:
    for child in item.get("ContentSequence", []):
        if keep(child):
            yield child
        yield from _walk(child, keep)


def quirk(sr: Dataset, *mutations: Callable[[Dataset], object]) -> Dataset:
    """A deep copy of ``sr`` with the mutations applied in order."""
    out = copy.deepcopy(sr)
    for mutate in mutations:
        mutate(out)
    return out


def strip_tracking_uids(sr: Dataset) -> None:
    for g in groups(sr):
        g.ContentSequence = [i for i in g.ContentSequence if _concept(i) != codes.TRACKING_UNIQUE_IDENTIFIER.code]


def strip_template_ids(sr: Dataset) -> None:
    if "ContentTemplateSequence" in sr:
        del sr.ContentTemplateSequence
    for g in groups(sr):
        if "ContentTemplateSequence" in g:
            del g.ContentTemplateSequence


def to_srt(sr: Dataset) -> None:
    """Rewrite SCT codes that have a SNOMED-RT equivalent in codes.SRT_TO_SCT as legacy SRT codes."""
    back = {sct: srt for srt, sct in codes.SRT_TO_SCT.items()}

    def fix(seq_item: Dataset) -> None:
        if seq_item.get("CodingSchemeDesignator") == "SCT" and seq_item.get("CodeValue") in back:
            seq_item.CodeValue, seq_item.CodingSchemeDesignator = back[seq_item.CodeValue], "SRT"

    for item in _walk(sr, lambda _i: True):
        for keyword in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            for code_item in item.get(keyword, []):
                fix(code_item)


def remove_value(sr: Dataset, concept_code: str, group_index: int = 0) -> None:
    """Make one NUM a NUM without a value (empty Measured Value Sequence)."""
    for item in groups(sr)[group_index].ContentSequence:
        if item.ValueType == "NUM" and _concept(item) == concept_code:
            item.MeasuredValueSequence = []
            return
    raise KeyError(concept_code)


def set_relationship(sr: Dataset, concept_code: str, relationship: str, group_index: int = 0) -> None:
    for item in groups(sr)[group_index].ContentSequence:
        if _concept(item) == concept_code:
            item.RelationshipType = relationship
            return
    raise KeyError(concept_code)


def set_unit(sr: Dataset, concept_code: str, unit: str, value: float | None = None, group_index: int = 0) -> None:
    for item in groups(sr)[group_index].ContentSequence:
        if item.ValueType == "NUM" and _concept(item) == concept_code:
            measured = item.MeasuredValueSequence[0]
            measured.MeasurementUnitsCodeSequence[0].CodeValue = unit
            measured.MeasurementUnitsCodeSequence[0].CodeMeaning = unit
            if value is not None:
                measured.NumericValue = f"{value:g}"
                if "FloatingPointValue" in measured:
                    measured.FloatingPointValue = value
            return
    raise KeyError(concept_code)


def set_finding(sr: Dataset, value: str, scheme: str, meaning: str, group_index: int = 0) -> None:
    for item in groups(sr)[group_index].ContentSequence:
        if _concept(item) == codes.FINDING.code:
            code_item = item.ConceptCodeSequence[0]
            code_item.CodeValue, code_item.CodingSchemeDesignator, code_item.CodeMeaning = value, scheme, meaning
            return
    raise KeyError(codes.FINDING.code)


def remove_groups(sr: Dataset) -> None:
    """Leave the Imaging Measurements container empty (a report of "no nodules")."""
    for item in _walk(sr, lambda i: _concept(i) == codes.IMAGING_MEASUREMENTS.code):
        item.ContentSequence = []
