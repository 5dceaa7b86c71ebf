"""Ingestion of the synthetic cohort (risk synth) matches its ground truth: every reported nodule with its sizes,
lobe and composition, tracks equal to the true nodules (also where the vendor stripped tracking UIDs), growth."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from risk.deadline import Deadline
from risk.domain import NoduleObservation, NoteSeverity, SourceState, TrackLinkage
from risk.guidelines.growth import VolumeMethod, assess_growth
from risk.imaging.pipeline import ImagingResult, load_imaging
from risk.sources.dicomweb import DicomFolderSource

PATIENTS, SEED, SITE = 16, 4104, "site-b"  # site-b: more stripped tracking UIDs, SRT codes, volumetric groups
SCOORD_TOLERANCE_MM = 4.0
"""A 2-D SCOORD lies on the nearest slice: its z is off by up to half the slice spacing of the 64² test CT."""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from risk.synth.pipeline import SynthOptions, generate

    out = tmp_path_factory.mktemp("synth") / "cohort"
    generate(SynthOptions(out=out, patients=PATIENTS, seed=SEED, site=SITE, workers=1))
    return out


@pytest.fixture(scope="module")
def ingested(cohort: Path) -> dict[str, ImagingResult]:
    as_of = date.fromisoformat(json.loads((cohort / "manifest.json").read_text())["as_of"])
    source = DicomFolderSource(cohort / "dicom")
    patients = pl.read_parquet(cohort / "truth" / "patients.parquet")
    return {row["patient_id"]: load_imaging(source, None, dicom_patient_ids=[row["mrn"]], study_uids=[],
                                            as_of=as_of, deadline=Deadline(120))
            for row in patients.iter_rows(named=True)}


@pytest.fixture(scope="module")
def truth(cohort: Path) -> pl.DataFrame:
    nodules = pl.read_parquet(cohort / "truth" / "nodules.parquet")
    studies = pl.read_parquet(cohort / "truth" / "studies.parquet")
    return nodules.filter(pl.col("detected_by_ai")).join(
        studies.select("study_instance_uid", "sr_shape", "sr_tracking_uids_stripped"), on="study_instance_uid")


def _match(observation: NoduleObservation, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    assert observation.position is not None
    best = min(rows, key=lambda r: _distance(observation, r), default=None)
    return best if best is not None and _distance(observation, best) <= SCOORD_TOLERANCE_MM else None


def _distance(o: NoduleObservation, row: dict[str, Any]) -> float:
    assert o.position is not None
    return float(((o.position.x_mm - row["sr_centre_x_mm"]) ** 2 + (o.position.y_mm - row["sr_centre_y_mm"]) ** 2
                  + (o.position.z_mm - row["sr_centre_z_mm"]) ** 2) ** 0.5)


@pytest.mark.slow
def test_every_reported_nodule_is_read_as_the_truth_says(ingested: dict[str, ImagingResult],
                                                         truth: pl.DataFrame) -> None:
    check_observations(ingested, truth)


@pytest.mark.slow
def test_tracks_are_the_true_nodules(ingested: dict[str, ImagingResult], truth: pl.DataFrame) -> None:
    check_tracks(ingested, truth)


def check_observations(ingested: dict[str, ImagingResult], truth: pl.DataFrame) -> None:
    seen = 0
    for patient, result in ingested.items():
        assert result.status.state is SourceState.OK, patient
        assert not [n for n in result.notes if n.severity is not NoteSeverity.INFO], patient
        rows = truth.filter(pl.col("patient_id") == patient).to_dicts()
        observations = [o for t in result.tracks for o in t.observations]
        assert len(observations) == len(rows), patient
        for o in observations:
            row = _match(o, [r for r in rows if r["study_instance_uid"] == o.study_instance_uid])
            assert row is not None, (patient, o)
            seen += 1
            if row["sr_shape"] != "planar-scoord-circle":
                assert _distance(o, row) < 0.05
            assert o.long_axis_mm == pytest.approx(row["sr_long_axis_mm"])
            assert o.short_axis_mm == pytest.approx(row["sr_short_axis_mm"])
            assert o.volume_mm3 == pytest.approx(row["sr_volume_mm3"])
            assert o.lobe is not None and o.lobe.value == row["lobe"]
            assert o.composition.value == row["composition"]
            assert o.ai_malignancy_probability == pytest.approx(row["ai_probability"], abs=1e-3)
            if row["sr_tracking_uids_stripped"]:
                assert o.tracking_uid is None
            else:
                assert o.tracking_uid == row["tracking_uid"]
            if row["sr_solid_component_mm"] is not None:
                assert o.solid_component_mm == pytest.approx(row["sr_solid_component_mm"])
    assert seen == truth.height


def check_tracks(ingested: dict[str, ImagingResult], truth: pl.DataFrame) -> None:
    linkages: dict[TrackLinkage, int] = defaultdict(int)
    for patient, result in ingested.items():
        rows = truth.filter(pl.col("patient_id") == patient).to_dicts()
        true_uid_of_track = {}
        for track in result.tracks:
            uids = set()
            for o in track.observations:
                row = _match(o, [r for r in rows if r["study_instance_uid"] == o.study_instance_uid])
                assert row is not None
                uids.add(row["tracking_uid"])
            assert len(uids) == 1, f"{patient}: track {track.track_id} merges nodules {uids}"
            true_uid_of_track[track.track_id] = uids.pop()
            linkages[track.linkage] += 1
        # one track per true nodule
        assert sorted(true_uid_of_track.values()) == sorted({r["tracking_uid"] for r in rows}), patient
        for track in result.tracks:
            if len(track.observations) < 2:
                assert track.growth is None
                continue
            mine = [r for r in rows if r["tracking_uid"] == true_uid_of_track[track.track_id]]
            mine.sort(key=lambda r: r["study_date"])
            earlier, last = mine[-2], mine[-1]
            expected = assess_growth(earlier["sr_volume_mm3"], last["sr_volume_mm3"],
                                     (last["study_date"] - earlier["study_date"]).days, VolumeMethod.MEASURED)
            assert track.growth == expected, patient
    # the cohort exercises both ways of linking (UID, and position/size where the vendor stripped UIDs)
    assert linkages[TrackLinkage.TRACKING_UID] >= 1 and linkages[TrackLinkage.POSITION_AND_SIZE] >= 1, linkages


@pytest.mark.integration
@pytest.mark.slow
def test_the_cohort_through_orthanc_matches_the_truth(cohort: Path, truth: pl.DataFrame) -> None:
    """The same cohort STOWed into the local stack's Orthanc and read back over DICOMweb."""
    import pydicom

    from risk.sources.dicomweb import DicomwebSource
    from tests.sources.test_dicomweb import _stack_settings, orthanc_delete_patients

    source = DicomwebSource.from_settings(_stack_settings())
    prefix = "LC-IT-TRUTH-"  # Patient IDs of its own, removed before and after (the seeded UIDs repeat each run)
    orthanc_delete_patients(prefix + "*")
    try:
        paths = sorted((cohort / "dicom").rglob("*.dcm"))
        for start in range(0, len(paths), 200):
            batch = [pydicom.dcmread(p) for p in paths[start:start + 200]]
            for ds in batch:
                ds.PatientID = prefix + str(ds.PatientID)
            assert source.store_instances(batch).ok
        as_of = date.fromisoformat(json.loads((cohort / "manifest.json").read_text())["as_of"])
        patients = pl.read_parquet(cohort / "truth" / "patients.parquet")
        ingested = {row["patient_id"]: load_imaging(source, None, dicom_patient_ids=[prefix + row["mrn"]],
                                                    study_uids=[], as_of=as_of, deadline=Deadline(120))
                    for row in patients.iter_rows(named=True)}
    finally:
        orthanc_delete_patients(prefix + "*")
    check_observations(ingested, truth)
    check_tracks(ingested, truth)
