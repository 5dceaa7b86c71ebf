"""The "vendor AI" report of one CT study: a TID 1500 Comprehensive 3D SR built with highdicom.

Per detected nodule one measurement group (interop.md §5.1/5.3): Tracking Identifier ("Nodule <n>") and
Tracking Unique Identifier (the same UID in every study of the patient), finding Nodule in category
Morphologically abnormal structure, finding site = the lobe (SNOMED pre-coordinated lobe codes), algorithm
identification, a time point context, measurements Long Axis, Short Axis, Diameter (derivation Maximum: the longest
diameter, Brock's size), Volume, Solid component (part-solid only, RadLex RID50154) and Probability of cancer
(DCM 111047, the AI malignancy score, no units), and qualitative evaluations Solidness and Margin (RadLex).

The region of interest depends on the study's SR shape (site profile rates):

* TID 1410 planar group with a SCOORD3D POINT at the nodule centre (frame of reference of the CT);
* TID 1411 volumetric group with a volume surface POINT at the centre and the CT series as source;
* TID 1410 planar group with a 2-D SCOORD CIRCLE (centre and a point on the circumference, half the long axis
  away) on the CT slice nearest the centre.

Vendor quirks at the site's rates: every Tracking Unique Identifier item (UIDREF 112040) stripped after building
(real vendors omit it; highdicom requires it, issue #213), and legacy SNOMED-RT (SRT) codes instead of SCT where
DICOM CP-1850 lists one (risk.codes.SRT_TO_SCT). The SR files into the CT's study (same StudyInstanceUID) with
the CT series as evidence; nothing in it depends on the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, TM

from risk import codes
from risk.synth import fhir as F
from risk.synth import model as M
from risk.synth import phantom
from risk.synth.sites import AiProduct
from risk.synth.studies import StudyContext, StudyNodule

_SOLIDNESS = (codes.SOLID, codes.PART_SOLID, codes.NON_SOLID)
_MARGINS = (codes.MARGIN_SMOOTH, codes.MARGIN_LOBULATED, codes.MARGIN_IRREGULAR, codes.MARGIN_SPICULATED)
_LOBES = tuple(codes.LOBES[name] for name in phantom.LOBE_NAMES)
_SCT_TO_SRT = {sct: srt for srt, sct in codes.SRT_TO_SCT.items()}


def build_sr(ctx: StudyContext, evidence: list[Dataset], geometry: phantom.Geometry, ai: AiProduct) -> Dataset:
    """The study's vendor-AI Comprehensive 3D SR (quirks applied)."""
    groups = [_group(ctx, n, evidence, geometry, ai) for n in ctx.nodules if n.detected]
    observer = hd.sr.ObserverContext(
        observer_type=codes.OBSERVER_TYPE_DEVICE.dicom(),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=ctx.device_uid, name=ai.name, manufacturer_name=ai.manufacturer, model_name=ai.version),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.CT_CHEST.dicom(),
        imaging_measurements=groups or [_placeholder_group(ctx)],
        title=codes.IMAGING_MEASUREMENT_REPORT.dicom(),
    )
    if not groups:
        _make_negative(report)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=ctx.sr_series_uid,
        series_number=F.SR_SERIES_NUMBER, sop_instance_uid=ctx.sr_sop_uid, instance_number=1,
        manufacturer=ai.manufacturer, is_complete=True, institution_name=ctx.institution,
        series_description=F.SR_SERIES_DESCRIPTION, manufacturer_model_name=ai.name,
        software_versions=ai.version, content_date=ctx.date, content_time=ctx.time, series_date=ctx.date,
        series_time=ctx.time,
    )
    # highdicom stamps the instance creation and its own contribution with the wall clock: pin both to the
    # study's date and time for byte-identical output.
    sr.InstanceCreationDate = DA(ctx.date)
    sr.InstanceCreationTime = TM(ctx.time)
    for equipment in sr.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in equipment:
            equipment.ContributionDateTime = ctx.date + ctx.time
    if ctx.strip_tracking_uids:
        strip_tracking_uids(sr)
    if ctx.legacy_srt:
        to_legacy_srt(sr)
    return sr


def _group(ctx: StudyContext, n: StudyNodule, evidence: list[Dataset], geometry: phantom.Geometry,
           ai: AiProduct) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | (
               hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations):
    mm, mm3 = codes.UCUM_MILLIMETER.dicom(), codes.UCUM_CUBIC_MILLIMETER.dicom()
    measurements = [
        hd.sr.Measurement(name=codes.LONG_AXIS.dicom(), value=n.measured_long_mm, unit=mm),
        hd.sr.Measurement(name=codes.SHORT_AXIS.dicom(), value=n.measured_short_mm, unit=mm),
        hd.sr.Measurement(name=codes.DIAMETER.dicom(), value=n.measured_long_mm, unit=mm,
                          derivation=codes.MAXIMUM.dicom()),
        hd.sr.Measurement(name=codes.VOLUME.dicom(), value=n.measured_volume_mm3, unit=mm3),
    ]
    if n.measured_core_mm is not None:
        measurements.append(hd.sr.Measurement(name=codes.SOLID_COMPONENT_DIAMETER.dicom(),
                                              value=n.measured_core_mm, unit=mm))
    measurements.append(hd.sr.Measurement(name=codes.PROBABILITY_OF_CANCER.dicom(), value=n.ai_probability,
                                          unit=codes.UCUM_NO_UNITS.dicom()))
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(uid=n.tracking_uid, identifier=f"Nodule {n.ordinal}"),
        "time_point_context": hd.sr.TimePointContext(time_point=ctx.time_point),
        "finding_type": codes.NODULE.dicom(),
        "finding_category": codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE.dicom(),
        "algorithm_id": hd.sr.AlgorithmIdentification(name=ai.name, version=ai.version),
        "finding_sites": [hd.sr.FindingSite(anatomic_location=_LOBES[n.lobe].dicom())],
        "measurements": measurements,
        "qualitative_evaluations": [
            hd.sr.QualitativeEvaluation(name=codes.SOLIDNESS.dicom(), value=_SOLIDNESS[n.composition].dicom()),
            hd.sr.QualitativeEvaluation(name=codes.MARGIN.dicom(), value=_MARGINS[n.margin].dicom()),
        ],
    }
    centre = np.array([n.measured_centre_mm])
    if ctx.sr_style == M.SR_VOLUMETRIC:
        surface = hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=centre,
            frame_of_reference_uid=ctx.frame_of_reference_uid,
            source_series=hd.sr.SourceSeriesForSegmentation(ctx.ct_series_uid))
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_volume_surface=surface, **common)
    if ctx.sr_style == M.SR_PLANAR_3D_POINT:
        region: hd.sr.ImageRegion | hd.sr.ImageRegion3D = hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=centre,
            frame_of_reference_uid=ctx.frame_of_reference_uid)
    else:
        region = _circle_on_slice(n, evidence, geometry)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)


def _placeholder_group(ctx: StudyContext) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """highdicom builds TID 1500 only with at least one group; this one is replaced by :func:`_make_negative`."""
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=ctx.sr_sop_uid, identifier="placeholder"),
        referenced_region=hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                              graphic_data=np.zeros((1, 3)),
                                              frame_of_reference_uid=ctx.frame_of_reference_uid))


def _make_negative(report: hd.sr.MeasurementReport) -> None:
    """Turn the report into a negative one: no Imaging Measurements, a report-level Qualitative Evaluations
    container (TID 1500 row 12, UMLS C0034375) saying Lung-RADS 1, as AI products report "no nodules found"."""
    root = report[0]
    evaluation = hd.sr.ContainerContentItem(name=codes.QUALITATIVE_EVALUATIONS.dicom(),
                                            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    evaluation.ContentSequence = hd.sr.ContentSequence([hd.sr.CodeContentItem(
        name=codes.LUNG_RADS_ASSESSMENT.dicom(), value=codes.LUNG_RADS_CATEGORY_CODES["1"].dicom(),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)])
    root.ContentSequence = [evaluation if _is(item, codes.IMAGING_MEASUREMENTS) else item
                            for item in root.ContentSequence]


def _circle_on_slice(n: StudyNodule, evidence: list[Dataset], geometry: phantom.Geometry) -> hd.sr.ImageRegion:
    """SCOORD CIRCLE in (column, row) pixel coordinates; the centre of the top-left pixel is (0.5, 0.5)."""
    x, y, z = n.measured_centre_mm
    z_slices = geometry.slice_z_mm()
    k = int(np.argmin(np.abs(z_slices - z)))
    col = (x - geometry.x0_mm) / geometry.pixel_spacing_mm + 0.5
    row = (y - geometry.x0_mm) / geometry.pixel_spacing_mm + 0.5
    radius_px = n.measured_long_mm / 2 / geometry.pixel_spacing_mm
    data = np.array([[col, row], [col + radius_px, row]])
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.CIRCLE, graphic_data=data,
                             source_image=hd.sr.SourceImageForRegion(
                                 referenced_sop_class_uid=evidence[k].SOPClassUID,
                                 referenced_sop_instance_uid=evidence[k].SOPInstanceUID))


def _walk(items: Iterable[Dataset]) -> Iterable[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def strip_tracking_uids(sr: Dataset) -> int:
    """Remove every Tracking Unique Identifier content item (UIDREF DCM 112040); returns how many."""
    removed = 0
    for item in _walk(sr.ContentSequence):
        children = item.get("ContentSequence")
        if children is None:
            continue
        keep = [c for c in children if not _is(c, codes.TRACKING_UNIQUE_IDENTIFIER)]
        if len(keep) != len(children):
            removed += len(children) - len(keep)
            item.ContentSequence = keep
    return removed


def to_legacy_srt(sr: Dataset) -> int:
    """Recode SCT concepts that have a SNOMED-RT equivalent as SRT (as pre-CP-1850 SRs did); returns how many."""
    changed = 0
    for item in _walk(sr.ContentSequence):
        for key in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            for code in item.get(key, []):
                srt = _SCT_TO_SRT.get(code.CodeValue) if code.CodingSchemeDesignator == "SCT" else None
                if srt is not None:
                    code.CodeValue = srt
                    code.CodingSchemeDesignator = "SRT"
                    changed += 1
    return changed


def _is(item: Dataset, code: codes.Code) -> bool:
    names = item.get("ConceptNameCodeSequence")
    return bool(names) and names[0].CodeValue == code.code and names[0].CodingSchemeDesignator == "DCM"
