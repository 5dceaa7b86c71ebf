"""DICOM output: CT headers, the vendor-AI TID 1500 SR round-trips through highdicom (planar and volumetric groups,
tracking UIDs persistent across rounds, negative reports), vendor quirks, and each CT nodule lies where its SR says."""

from __future__ import annotations

import dataclasses
import io
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import polars as pl
import pydicom
import pytest
from pydicom.dataset import Dataset

from risk import codes
from risk.synth import dicom as D
from risk.synth import model as M
from risk.synth import phantom, sr
from risk.synth.sites import SITE_A
from risk.synth.studies import study_contexts

from .conftest import E2E_MATRIX, E2E_PATIENTS, E2E_SEED

GEOMETRY = phantom.GEOMETRIES[E2E_MATRIX]


@pytest.fixture(scope="module")
def truth(cohort_dir: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(cohort_dir / "truth" / f"{name}.parquet")
            for name in ("patients", "studies", "nodules")}


def _sr(cohort_dir: Path, study: dict[str, Any]) -> Dataset:
    path = (cohort_dir / "dicom" / study["study_instance_uid"] / study["sr_series_instance_uid"]
            / f"{study['sr_sop_instance_uid']}.dcm")
    return pydicom.dcmread(path)


def _content(report: hd.sr.Comprehensive3DSR) -> hd.sr.MeasurementReport:
    content = report.content
    assert isinstance(content, hd.sr.MeasurementReport)
    return content


def _groups(report: hd.sr.Comprehensive3DSR) -> list[Any]:
    content = _content(report)
    return [*content.get_planar_roi_measurement_groups(), *content.get_volumetric_roi_measurement_groups()]


def _measure(group: Any, code: codes.Code) -> float | None:
    found = [m for m in group.get_measurements() if m.name.value == code.code]
    return float(found[0].value) if found else None


def test_ct_series_headers(cohort_dir: Path, truth: dict[str, pl.DataFrame]) -> None:
    mrn = dict(truth["patients"].select("patient_id", "mrn").iter_rows())
    for study in truth["studies"].iter_rows(named=True):
        folder = cohort_dir / "dicom" / study["study_instance_uid"] / study["ct_series_instance_uid"]
        files = sorted(folder.glob("*.dcm"))
        assert len(files) == GEOMETRY.n_slices == study["ct_instances"]
        slices = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in files),
                        key=lambda d: int(d.InstanceNumber))
        first = slices[0]
        assert first.PatientID == mrn[study["patient_id"]]
        assert first.StudyInstanceUID == study["study_instance_uid"]
        assert first.FrameOfReferenceUID == study["frame_of_reference_uid"]
        assert first.AccessionNumber == study["accession_number"]
        assert first.StudyDate == study["study_date"].strftime("%Y%m%d")
        assert (first.Manufacturer, first.ManufacturerModelName, first.ConvolutionKernel) == (
            study["manufacturer"], study["model"], study["convolution_kernel"])
        assert "SYNTHETIC" in first.SeriesDescription and "SYNTHETIC" in first.StudyDescription
        assert first.Modality == "CT" and first.SOPClassUID == pydicom.uid.CTImageStorage
        assert [float(v) for v in first.PixelSpacing] == pytest.approx([GEOMETRY.pixel_spacing_mm] * 2, abs=1e-5)
        assert float(first.SliceThickness) == GEOMETRY.slice_thickness_mm
        assert (first.RescaleIntercept, first.RescaleSlope) == (-1024, 1)
        assert [int(d.InstanceNumber) for d in slices] == list(range(1, GEOMETRY.n_slices + 1))
        assert [float(d.ImagePositionPatient[2]) for d in slices] == pytest.approx(list(GEOMETRY.slice_z_mm()))
        assert {d.SOPInstanceUID for d in slices} == {f.stem for f in files}
        pixels = pydicom.dcmread(files[0]).pixel_array
        assert pixels.shape == (GEOMETRY.matrix, GEOMETRY.matrix) and pixels.dtype == np.uint16


def test_fast_slice_encoder_equals_pydicom_save_as() -> None:
    cohort = M.simulate_chunk(E2E_SEED, SITE_A, 0, date(2026, 6, 30), n=1)
    ctx = study_contexts(cohort, 0)[0]
    g = phantom.GEOMETRIES[64]
    varying = D.slice_attributes("1.2.3.4.5", 7, g.x0_mm, -12.5, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    reference = D.ct_header(ctx, g)
    reference.update(varying)
    reference.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID("1.2.3.4.5")
    buffer = io.BytesIO()
    reference.save_as(buffer, enforce_file_format=True)
    assert D.SliceEncoder(D.ct_header(ctx, g)).encode(varying) == buffer.getvalue()


def test_sr_round_trips_through_highdicom_and_matches_the_truth(cohort_dir: Path,
                                                                truth: dict[str, pl.DataFrame]) -> None:
    nodules = truth["nodules"].filter(pl.col("detected_by_ai"))
    shapes_seen = set()
    for study in truth["studies"].iter_rows(named=True):
        ds = _sr(cohort_dir, study)
        assert ds.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
        assert ds.StudyInstanceUID == study["study_instance_uid"]
        assert "SYNTHETIC" in ds.SeriesDescription
        evidence = {ref.ReferencedSOPInstanceUID for item in ds.CurrentRequestedProcedureEvidenceSequence
                    for series in item.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
        ct_dir = cohort_dir / "dicom" / study["study_instance_uid"] / study["ct_series_instance_uid"]
        assert evidence == {f.stem for f in ct_dir.glob("*.dcm")}
        report = hd.sr.Comprehensive3DSR.from_dataset(ds)
        planar = _content(report).get_planar_roi_measurement_groups()
        volumetric = _content(report).get_volumetric_roi_measurement_groups()
        want = nodules.filter(pl.col("study_instance_uid") == study["study_instance_uid"])
        assert len(planar) + len(volumetric) == len(want) == study["nodules_reported"]
        if len(want):
            shapes_seen.add(study["sr_shape"])
            assert (len(volumetric) > 0) == (study["sr_shape"] == "volumetric-surface-point")
        by_name = {g.tracking_identifier: g for g in [*planar, *volumetric]}
        for row in want.iter_rows(named=True):
            group = by_name[row["tracking_identifier"]]
            assert group.tracking_uid == row["tracking_uid"]
            assert group.finding_type is not None and group.finding_type.value == codes.NODULE.code
            assert group.finding_sites[0].value.value == row["lobe_snomed"]
            assert _measure(group, codes.LONG_AXIS) == pytest.approx(row["sr_long_axis_mm"])
            assert _measure(group, codes.SHORT_AXIS) == pytest.approx(row["sr_short_axis_mm"])
            assert _measure(group, codes.DIAMETER) == pytest.approx(row["sr_long_axis_mm"])
            assert _measure(group, codes.VOLUME) == pytest.approx(row["sr_volume_mm3"])
            assert _measure(group, codes.PROBABILITY_OF_CANCER) == pytest.approx(row["ai_probability"])
            assert _measure(group, codes.SOLID_COMPONENT_DIAMETER) == (
                None if row["sr_solid_component_mm"] is None else pytest.approx(row["sr_solid_component_mm"]))
            solidness = group.get_qualitative_evaluations(name=codes.SOLIDNESS.dicom())[0].value
            assert isinstance(solidness, hd.sr.CodedConcept)
            assert solidness.value == {"solid": codes.SOLID, "part_solid": codes.PART_SOLID,
                                 "nonsolid": codes.NON_SOLID}[row["composition"]].code
    assert shapes_seen == set(M.SR_STYLE_NAMES)  # the fixture covers TID 1410 3-D, TID 1411 and 2-D circles


def test_tracking_uids_persist_across_rounds(cohort_dir: Path, truth: dict[str, pl.DataFrame]) -> None:
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)  # (patient, "Nodule k") -> tracking UIDs
    rounds: dict[tuple[str, str], set[str]] = defaultdict(set)
    for study in truth["studies"].iter_rows(named=True):
        report = hd.sr.Comprehensive3DSR.from_dataset(_sr(cohort_dir, study))
        for group in _groups(report):
            key = (study["patient_id"], group.tracking_identifier)
            seen[key].add(str(group.tracking_uid))
            rounds[key].add(study["study_instance_uid"])
    assert all(len(v) == 1 for v in seen.values())
    assert len({next(iter(v)) for v in seen.values()}) == len(seen)  # one UID per nodule, none shared
    assert max(len(v) for v in rounds.values()) >= 3  # some nodule was reported on three or more studies


def test_negative_study_has_a_no_nodule_report(cohort_dir: Path, truth: dict[str, pl.DataFrame]) -> None:
    negative = truth["studies"].filter(pl.col("nodules_reported") == 0)
    assert negative.height > 0
    for study in negative.head(3).iter_rows(named=True):
        ds = _sr(cohort_dir, study)
        report = hd.sr.Comprehensive3DSR.from_dataset(ds)
        assert _groups(report) == []
        names = [item.ConceptNameCodeSequence[0].CodeValue for item in ds.ContentSequence]
        assert codes.IMAGING_MEASUREMENTS.code not in names
        (evaluations,) = [i for i in ds.ContentSequence
                          if i.ConceptNameCodeSequence[0].CodeValue == codes.QUALITATIVE_EVALUATIONS.code]
        (item,) = evaluations.ContentSequence
        assert item.ConceptCodeSequence[0].CodeValue == codes.LUNG_RADS_CATEGORY_CODES["1"].code


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[list[Dataset]]]:
    cohort = M.simulate_chunk(E2E_SEED, SITE_A, 0, date(2026, 6, 30), n=E2E_PATIENTS)
    ctxs = [c for i in range(E2E_PATIENTS) for c in study_contexts(cohort, i) if any(n.detected for n in c.nodules)]
    out = tmp_path_factory.mktemp("quirks")
    evidence = [D.write_ct_series(c, phantom.GEOMETRIES[64], out) for c in ctxs[:3]]
    return ctxs[:3], evidence


def _items(ds: Dataset) -> list[Dataset]:
    out: list[Dataset] = []
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop()
        out.append(item)
        stack.extend(item.get("ContentSequence", []))
    return out


def test_quirk_missing_tracking_uids(contexts: tuple[list[Any], list[list[Dataset]]]) -> None:
    ctxs, evidence = contexts
    for ctx, ev in zip(ctxs, evidence, strict=True):
        plain = sr.build_sr(dataclasses.replace(ctx, strip_tracking_uids=False, legacy_srt=False), ev,
                            phantom.GEOMETRIES[64], SITE_A.ai)
        quirky = sr.build_sr(dataclasses.replace(ctx, strip_tracking_uids=True, legacy_srt=False), ev,
                             phantom.GEOMETRIES[64], SITE_A.ai)
        uidrefs = [i for i in _items(plain) if i.ConceptNameCodeSequence[0].CodeValue == "112040"]
        assert len(uidrefs) == sum(n.detected for n in ctx.nodules) > 0
        assert not [i for i in _items(quirky) if i.ConceptNameCodeSequence[0].CodeValue == "112040"]
        labels = [i.TextValue for i in _items(quirky) if i.ConceptNameCodeSequence[0].CodeValue == "112039"]
        assert sorted(labels) == sorted(f"Nodule {n.ordinal}" for n in ctx.nodules if n.detected)


def test_quirk_legacy_srt_codes(contexts: tuple[list[Any], list[list[Dataset]]]) -> None:
    ctxs, evidence = contexts
    ctx = dataclasses.replace(ctxs[0], strip_tracking_uids=False, legacy_srt=True)
    ds = sr.build_sr(ctx, evidence[0], phantom.GEOMETRIES[64], SITE_A.ai)
    concepts = [(c.CodingSchemeDesignator, c.CodeValue) for i in _items(ds)
                for key in ("ConceptNameCodeSequence", "ConceptCodeSequence") for c in i.get(key, [])]
    assert ("SRT", "G-D705") in concepts and ("SRT", "G-C0E3") in concepts and ("SRT", "M-03010") in concepts
    assert ("SCT", codes.VOLUME.code) not in concepts and ("SCT", codes.FINDING_SITE.code) not in concepts


def test_sr_is_deterministic(contexts: tuple[list[Any], list[list[Dataset]]]) -> None:
    ctxs, evidence = contexts
    blobs = []
    for _ in range(2):
        buffer = io.BytesIO()
        sr.build_sr(ctxs[0], evidence[0], phantom.GEOMETRIES[64], SITE_A.ai).save_as(buffer,
                                                                                      enforce_file_format=True)
        blobs.append(buffer.getvalue())
    assert blobs[0] == blobs[1]


# --- each CT nodule lies where its SR says ------------------------------------------------------------------------
def _volume(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    slices = sorted((pydicom.dcmread(f) for f in folder.glob("*.dcm")), key=lambda d: -float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    ipp = [float(v) for v in slices[0].ImagePositionPatient]
    dx = float(slices[0].PixelSpacing[0])
    xs = ipp[0] + np.arange(hu.shape[2]) * dx
    ys = ipp[1] + np.arange(hu.shape[1]) * dx
    zs = np.array([float(d.ImagePositionPatient[2]) for d in slices])
    z_by_uid = {d.SOPInstanceUID: float(d.ImagePositionPatient[2]) for d in slices}
    return hu, np.stack(np.meshgrid(zs, ys, xs, indexing="ij")), np.array([ipp[0], ipp[1], dx]), z_by_uid


def _ball_mean(hu: np.ndarray, grid: np.ndarray, centre: np.ndarray, radius: float) -> float:
    z, y, x = grid
    d2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    inside = d2 <= radius ** 2
    if not inside.any():
        inside = d2 == d2.min()
    return float(hu[inside].mean())


def _centre(group: Any, ipp_dx: np.ndarray, z_by_uid: dict[str, float]) -> np.ndarray:
    roi = group.roi
    if isinstance(roi, hd.sr.VolumeSurface):
        return np.asarray(roi.graphic_data)[0]
    if isinstance(roi, hd.sr.ImageRegion3D):
        return np.asarray(roi.value)[0]
    assert isinstance(roi, hd.sr.ImageRegion) and roi.GraphicType == "CIRCLE"
    col, row = np.asarray(roi.value)[0]
    uid = roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    x0, y0, dx = ipp_dx
    return np.array([x0 + (col - 0.5) * dx, y0 + (row - 0.5) * dx, z_by_uid[uid]])


def test_each_ct_nodule_lies_where_its_sr_says(cohort_dir: Path, truth: dict[str, pl.DataFrame]) -> None:
    nodules = truth["nodules"]
    checked = 0
    for study in truth["studies"].filter(pl.col("nodules_reported") > 0).iter_rows(named=True):
        hu, grid, ipp_dx, z_by_uid = _volume(cohort_dir / "dicom" / study["study_instance_uid"]
                                             / study["ct_series_instance_uid"])
        report = hd.sr.Comprehensive3DSR.from_dataset(_sr(cohort_dir, study))
        rows = {r["tracking_identifier"]: r for r in nodules.filter(
            pl.col("study_instance_uid") == study["study_instance_uid"]).iter_rows(named=True)}
        for group in _groups(report):
            row = rows[group.tracking_identifier]
            centre = _centre(group, ipp_dx, z_by_uid)
            truth_centre = np.array([row["centre_x_mm"], row["centre_y_mm"], row["centre_z_mm"]])
            slack = np.array([2.5, 2.5, 2.5 + (GEOMETRY.slice_thickness_mm / 2 if group.roi.__class__
                                                is hd.sr.ImageRegion else 0.0)])
            assert np.all(np.abs(centre - truth_centre) <= slack), (centre, truth_centre)
            long_mm = _measure(group, codes.LONG_AXIS)
            assert long_mm is not None
            if long_mm < 5.0:
                continue
            nodule_hu = phantom.HU_GROUND_GLASS if row["composition"] == "nonsolid" else phantom.HU_SOLID_NODULE
            contrast = nodule_hu - phantom.HU_LUNG
            radius = 0.3 * long_mm
            at_centre = _ball_mean(hu, grid, centre, radius) - phantom.HU_LUNG
            assert at_centre >= 0.3 * contrast, (row["tracking_uid"], at_centre, contrast)
            away = [_ball_mean(hu, grid, centre + shift, radius) - phantom.HU_LUNG
                    for shift in np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]) * (long_mm + 6.0)]
            assert sum(a < at_centre - 0.2 * contrast for a in away) >= 3, (at_centre, away)
            checked += 1
    assert checked >= 8
