"""The fusion feature rows: the imaging definitions by hand, the EHR mapping, and online == offline on a cohort."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fusion_models.explain import Contribution as FusionContribution
from fusion_models.features import NODULE_SCHEMA, PATIENT_SCHEMA
from risk.domain import Contribution
from risk.features.fusion_row import ehr_to_fusion, nodule_feature_rows, patient_row, to_domain_contributions
from risk.features.imaging import ReportedNodule, nodule_features, patient_imaging_features, tracks_from_table

D0, D1, D2 = date(2025, 1, 10), date(2025, 7, 10), date(2026, 1, 10)


def _nod(key: str, d: date, mm: float, **kw: Any) -> ReportedNodule:
    return ReportedNodule(track_key=key, study_date=d, diameter_mm=mm, long_axis_mm=mm, **kw)


def test_growth_between_the_last_two_dated_observations() -> None:
    track = [_nod("a", D0, 6.0, volume_mm3=100.0), _nod("a", D1, 7.0, volume_mm3=120.0),
             _nod("a", D2, 8.0, volume_mm3=150.0)]
    f = nodule_features(track, nodule_count=2)
    days = (D2 - D1).days
    assert f["nodule_volume_change_pct"] == pytest.approx(25.0)
    assert f["nodule_growth_interval_days"] == days
    assert f["nodule_doublings_per_year"] == pytest.approx(math.log2(150 / 120) * 365.25 / days)
    assert f["nodule_diameter_mm"] == 8.0 and f["nodule_observation_count"] == 3.0 and f["nodule_count"] == 2.0


def test_growth_falls_back_to_two_axis_ellipsoid_then_sphere() -> None:
    ellipsoid = [_nod("a", D0, 6.0, short_axis_mm=4.0), _nod("a", D1, 8.0, short_axis_mm=4.0)]
    assert nodule_features(ellipsoid, 1)["nodule_volume_change_pct"] == pytest.approx((8 * 16 / (6 * 16) - 1) * 100)
    sphere = [_nod("a", D0, 5.0), _nod("a", D1, 10.0)]
    assert nodule_features(sphere, 1)["nodule_volume_change_pct"] == pytest.approx(700.0)
    single = nodule_features([_nod("a", D1, 5.0)], 1)
    assert single["nodule_volume_change_pct"] is None and single["nodule_doublings_per_year"] is None


def test_patient_imaging_index_nodule_and_counts() -> None:
    tracks = [
        [_nod("a", D1, 6.0, margin="spiculated", lobe="RUL", composition="solid", ai_probability=0.2),
         _nod("a", D2, 9.0, margin="spiculated", lobe="RUL", composition="solid", ai_probability=0.6)],
        [_nod("b", D2, 12.0, composition="calcified", ai_probability=0.9)],  # larger, but calcified
        [_nod("c", D1, 20.0, composition="solid")],  # not on the latest CT (resolved)
    ]
    f = patient_imaging_features(tracks, ct_study_count=3, last_ct_date=D2)
    assert f["ct_study_count"] == 3.0 and f["nodule_count"] == 2.0
    assert f["index_nodule_diameter_mm"] == 9.0 and f["index_nodule_spiculated"] is True
    assert f["index_nodule_upper_lobe"] is True and f["max_ai_probability"] == 0.9
    assert f["index_nodule_growth_interval_days"] == (D2 - D1).days


def test_no_ct_means_no_imaging_and_a_clear_ct_means_zero_nodules() -> None:
    none = patient_imaging_features([], ct_study_count=0, last_ct_date=None)
    assert all(v is None for v in none.values())
    clear = patient_imaging_features([[_nod("a", D0, 5.0)]], ct_study_count=2, last_ct_date=D2)
    assert clear["nodule_count"] == 0.0 and clear["index_nodule_diameter_mm"] is None
    assert clear["ct_study_count"] == 2.0


def test_ehr_mapping() -> None:
    ehr = {"patient_id": "p", "age_years": 64, "sex": "other", "race_ethnicity": "black", "education_level": 3,
           "bmi": 24.5, "copd": True, "emphysema": False, "personal_history_cancer": False,
           "family_history_lung_cancer": True, "smoking_status": "never", "cigarettes_per_day": None,
           "smoking_duration_years": None, "years_since_quit": 3.0, "pack_years": 0.0, "wbc": 7.1, "fev1_fvc": 65.0,
           "ct_study_count": 0, "last_ct_date": None}
    out = ehr_to_fusion(ehr)
    assert out["sex"] is None and out["age_years"] == 64.0 and out["education_level"] == 3.0
    assert out["years_since_quit"] is None  # never-smokers have no quit date
    assert out["lab_wbc"] == 7.1 and out["lab_fev1_fvc"] == 65.0 and out["lab_crp"] is None
    assert ehr_to_fusion({**ehr, "smoking_status": "unknown"})["smoking_status"] is None
    row = patient_row(ehr, [])
    assert set(row) == set(PATIENT_SCHEMA.names)
    PATIENT_SCHEMA.encode_row(row)  # valid for the schema
    nodules = nodule_feature_rows(ehr, [[_nod("t1", D1, 7.0, composition="solid", margin="smooth", lobe="LLL")]])
    assert [k for k, _ in nodules] == ["t1"] and set(nodules[0][1]) == set(NODULE_SCHEMA.names)
    assert nodules[0][1]["nodule_upper_lobe"] is False


def test_contributions_convert_to_the_domain_type() -> None:
    out = to_domain_contributions([FusionContribution("pack_years", 0.4, "32 pack-years", 32.0)])
    assert out == (Contribution(feature="pack_years", contribution=0.4, description="32 pack-years"),)


def test_reported_nodules_table_keeps_only_detected_and_dated_rows() -> None:
    import polars as pl

    rows = [{"patient_id": "p", "tracking_uid": "u", "study_date": d, "sr_long_axis_mm": mm, "sr_short_axis_mm": 3.0,
             "sr_volume_mm3": None, "sr_solid_component_mm": None, "composition": "solid", "margin": "smooth",
             "lobe": "RUL", "ai_probability": 0.1, "detected_by_ai": det}
            for d, mm, det in ((D0, 5.0, True), (D1, 6.0, False), (D2, 7.0, True))]
    tracks = tracks_from_table(pl.DataFrame(rows), as_of=D1)
    assert [[o.study_date for o in t] for t in tracks["p"]] == [[D0]]


# --- online == offline on a generated cohort -------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, date, dict[str, Any]]:
    from risk.deadline import Deadline
    from risk.snapshots import build_snapshot, pacs_imaging
    from risk.sources.dicomweb import DicomFolderSource
    from risk.sources.fhir_file import FileFhirSource
    from risk.synth.pipeline import SynthOptions, generate

    out = tmp_path_factory.mktemp("fusion-cohort")
    # site-b: vendor SRs with stripped tracking UIDs, so some tracks are linked by position online
    generate(SynthOptions(out=out, patients=30, seed=7, site="site-b", workers=1))
    as_of = date.fromisoformat(json.loads((out / "manifest.json").read_text())["as_of"])
    source = FileFhirSource(out / "fhir" / "bundles")
    imaging = pacs_imaging(DicomFolderSource(out / "dicom"))
    snapshots = {pid: build_snapshot(source, pid, as_of=as_of, deadline=Deadline(60), imaging=imaging,
                                     max_workers=1) for pid in source.patient_ids()}
    return out, as_of, snapshots


@pytest.mark.slow
def test_online_patient_rows_equal_the_offline_table(cohort: tuple[Path, date, dict[str, Any]]) -> None:
    from risk.features.fusion_row import snapshot_to_fusion_features
    from risk.features.training_table import build_training_tables

    out, _, snapshots = cohort
    offline = {r["patient_id"]: r for r in build_training_tables(out).patient.iter_rows(named=True)}
    assert len(offline) >= 25  # all but prevalent cancers
    with_nodules = 0
    for pid, row in offline.items():
        online = snapshot_to_fusion_features(snapshots[pid])
        assert set(online) == set(PATIENT_SCHEMA.names)
        diffs = {k: (v, row[k]) for k, v in online.items() if not _same(v, row[k])}
        assert not diffs, (pid, diffs)
        with_nodules += online["index_nodule_diameter_mm"] is not None
    assert with_nodules >= 5


@pytest.mark.slow
def test_online_nodule_rows_equal_the_offline_table(cohort: tuple[Path, date, dict[str, Any]]) -> None:
    from risk.features.fusion_row import snapshot_to_nodule_features
    from risk.features.training_table import build_training_tables

    out, _, snapshots = cohort
    table = build_training_tables(out).nodule
    names = NODULE_SCHEMA.names
    compared = 0
    for pid, snapshot in snapshots.items():
        offline = sorted((tuple(r[k] for k in names) for r in table.filter(table["patient_id"] == pid)
                          .iter_rows(named=True)), key=repr)
        online = sorted((tuple(row[k] for k in names) for _, row in snapshot_to_nodule_features(snapshot)), key=repr)
        assert len(online) == len(offline), pid
        for a, b in zip(online, offline, strict=True):
            assert all(_same(x, y) for x, y in zip(a, b, strict=True)), (pid, a, b)
            compared += 1
    assert compared >= 10
