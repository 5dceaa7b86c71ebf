"""load_imaging end to end: a folder PACS with three screening rounds, the feature cache, outages and broken SRs."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from risk.config import StoreSettings
from risk.deadline import Deadline
from risk.domain import NoteCode, NoteSeverity, SourceState, TrackLinkage, TrackStatus
from risk.errors import UpstreamUnavailable
from risk.guidelines.growth import VolumeMethod
from risk.imaging.cache import ImagingFeatureCache
from risk.imaging.pipeline import PACS_SYSTEM, ImagingResult, load_imaging
from risk.sources.dicomweb import DicomFolderSource, DicomwebSource
from tests.support.dicom_factory import NoduleSpec, make_ct_series, make_sr, quirk, strip_tracking_uids, write

PATIENT = "LC-PIPE-1"
DATES = [date(2022, 1, 10), date(2023, 1, 12), date(2024, 1, 15)]
OFFSETS = [(0.0, 0.0, 0.0), (3.0, -2.0, 4.0), (-4.0, 1.0, -3.0)]  # patient positioning differs per study
GROWTH = [1.0, 1.15, 1.35]
UID_A, UID_B = "1.2.826.0.1.3680043.8.498.501", "1.2.826.0.1.3680043.8.498.502"


def _round(k: int, patient: str = PATIENT) -> list[Dataset]:
    ox, oy, oz = OFFSETS[k]
    ct = make_ct_series(patient_id=patient, study_date=DATES[k], origin_mm=(-16 + ox, -16 + oy, -15 + oz))
    g = GROWTH[k]
    specs = [NoduleSpec((1.0 + ox, 2.0 + oy, -5.0 + oz), diameter_mm=6 * g, volume_mm3=113.0 * g**3,
                        tracking_uid=UID_A, tracking_identifier="A"),
             NoduleSpec((-8.0 + ox, -6.0 + oy, 7.0 + oz), diameter_mm=5.0, lobe="LLL", tracking_uid=UID_B,
                        tracking_identifier="B", roi="circle2d")]
    if k == 2:
        specs.append(NoduleSpec((9.0 + ox, 9.0 + oy, 0.0 + oz), diameter_mm=4.0, lobe="RML", tracking_identifier="C"))
    sr = make_sr(ct, specs)
    if k == 1:
        sr = quirk(sr, strip_tracking_uids)  # the vendor dropped the tracking UIDs on the middle round
    return [*ct, sr]


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pacs")
    for k in range(3):
        write(root, _round(k))
    return root


class Counting:
    """A DicomSource wrapper that counts calls and can fail from the n-th call on."""

    def __init__(self, inner: Any, fail_from: int | None = None) -> None:
        self.inner, self.calls, self.fail_from = inner, Counter[str](), fail_from

    @property
    def system(self) -> str:
        return str(self.inner.system)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.fail_from is not None and sum(self.calls.values()) >= self.fail_from:
                raise UpstreamUnavailable("PACS", "connection refused")
            return method(*args, **kwargs)
        return call


def load(source: Any, *, cache: ImagingFeatureCache | None = None, as_of: date = date(2024, 6, 1),
         ids: tuple[str, ...] = (PATIENT,), uids: tuple[str, ...] = (), budget_s: float = 30.0) -> ImagingResult:
    return load_imaging(source, cache, dicom_patient_ids=ids, study_uids=uids, as_of=as_of,
                        deadline=Deadline(budget_s))


def test_three_rounds_make_tracks_with_growth(pacs: Path) -> None:
    result = load(DicomFolderSource(pacs))
    assert result.status.state is SourceState.OK and result.status.system == PACS_SYSTEM
    assert [s.started for s in result.studies] == DATES and {s.modality for s in result.studies} == {"CT"}
    by_id = {t.track_id: t for t in result.tracks}
    a, b = by_id[UID_A], by_id[UID_B]
    assert [o.study_date for o in a.observations] == DATES and a.status is TrackStatus.PERSISTENT
    # the middle round had no tracking UIDs: linked by position and size after aligning on the two nodules
    assert a.linkage is TrackLinkage.POSITION_AND_SIZE and "constellation of 2 nodules" in a.notes[0]
    assert a.growth is not None and a.growth.volume_method is VolumeMethod.MEASURED
    assert a.growth.v2_mm3 / a.growth.v1_mm3 == pytest.approx((1.35 / 1.15) ** 3)
    assert [o.lobe.value if o.lobe else None for o in b.observations] == ["LLL"] * 3
    assert b.observations[0].position is not None  # SCOORD placed with the CT geometry fetched from the PACS
    assert b.observations[0].slice_sop_instance_uid is not None
    (c,) = [t for t in result.tracks if t.status is TrackStatus.NEW]
    assert c.latest.tracking_identifier == "C"
    assert not [n for n in result.notes if n.severity is not NoteSeverity.INFO]


def test_only_studies_up_to_as_of_count(pacs: Path) -> None:
    result = load(DicomFolderSource(pacs), as_of=date(2023, 6, 1))
    assert [s.started for s in result.studies] == DATES[:2]
    assert {t.status for t in result.tracks} == {TrackStatus.PERSISTENT}
    assert len(result.tracks) == 2


def test_studies_found_by_ehr_study_uid(pacs: Path) -> None:
    source = DicomFolderSource(pacs)
    uids = tuple(s.study_instance_uid for s in load(source).studies)
    by_uid = load(source, ids=(), uids=(uids[0], "1.2.826.0.1.3680043.8.498.999999"))
    assert [s.study_instance_uid for s in by_uid.studies] == [uids[0]]
    assert any(n.code is NoteCode.MISSING_VALUE and "PACS has no such study" in n.message for n in by_uid.notes)
    other_id = load(source, ids=("SOMEONE-ELSE",), uids=(uids[0],))
    assert [s.study_instance_uid for s in other_id.studies] == [uids[0]]
    assert any(n.code is NoteCode.CONFLICT for n in other_id.notes)


def test_feature_cache_parses_each_sr_once(pacs: Path, tmp_path: Path) -> None:
    from risk.store import open_database

    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/risk.db"))
    try:
        cache = ImagingFeatureCache(db)
        first_source = Counting(DicomFolderSource(pacs))
        first = load(first_source, cache=cache)
        assert first_source.calls["retrieve_instance"] == 3
        again_source = Counting(DicomFolderSource(pacs))
        again = load(again_source, cache=cache)
        assert again_source.calls["retrieve_instance"] == 0
        assert again_source.calls["retrieve_instance_metadata"] == 0
        assert again.tracks == first.tracks and again.studies == first.studies
    finally:
        db.dispose()


def test_pacs_down_is_unavailable_not_no_nodules() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = load(DicomwebSource(f"http://127.0.0.1:{port}/dicom-web"), uids=("1.2.3.4", "1.2.3.5"))
    assert time.monotonic() - started < 3.0
    assert result.status.state is SourceState.UNAVAILABLE
    assert result.tracks == () and result.studies == ()
    errors = [n for n in result.notes if n.severity is NoteSeverity.ERROR]
    assert len(errors) == 1 and errors[0].code is NoteCode.UPSTREAM_UNAVAILABLE  # one outage note, no retries
    assert "absence of nodules means nothing" in errors[0].message


def test_outage_half_way_is_partial(pacs: Path) -> None:
    source = Counting(DicomFolderSource(pacs), fail_from=6)
    result = load(source)
    assert result.status.state is SourceState.PARTIAL
    assert len(result.studies) == 3  # what was found is kept
    assert any(n.severity is NoteSeverity.ERROR and n.code is NoteCode.UPSTREAM_UNAVAILABLE for n in result.notes)


def test_expired_deadline(pacs: Path) -> None:
    result = load_imaging(DicomFolderSource(pacs), None, dicom_patient_ids=[PATIENT], study_uids=[],
                          as_of=date(2024, 6, 1), deadline=Deadline(1e-9))
    assert result.status.state is SourceState.UNAVAILABLE
    assert [n.code for n in result.notes if n.severity is NoteSeverity.ERROR] == [NoteCode.DEADLINE_EXCEEDED]


def test_a_broken_sr_does_not_sink_the_others(pacs: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "pacs"
    shutil.copytree(pacs, copy)
    source = DicomFolderSource(copy)
    middle = load(source).studies[1].study_instance_uid
    (sr_path,) = [p for p in (copy / middle).rglob("*.dcm") if "SR" in str(_modality(p))]
    raw = sr_path.read_bytes()
    sr_path.write_bytes(raw[: len(raw) // 2])
    result = load(DicomFolderSource(copy))
    assert result.status.state is SourceState.OK  # a broken object is not an outage
    broken = [n for n in result.notes if n.severity is NoteSeverity.WARNING]
    assert len(broken) == 1 and "truncated" in broken[0].message and broken[0].code is NoteCode.MALFORMED
    # the middle round is no longer evaluated: the first and last rounds are linked by tracking UID
    a = next(t for t in result.tracks if t.track_id == UID_A)
    assert [o.study_date for o in a.observations] == [DATES[0], DATES[2]]


def _modality(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality"))


@pytest.mark.integration
def test_orthanc_end_to_end() -> None:
    import uuid

    from tests.sources.test_dicomweb import _stack_settings, orthanc_delete_patients

    source = DicomwebSource.from_settings(_stack_settings())
    patient = f"LC-IT-PIPE-{uuid.uuid4().hex[:8]}"
    try:
        for k in range(3):
            assert source.store_instances(_round(k, patient)).ok
        result = load(source, ids=(patient,))
    finally:
        orthanc_delete_patients(patient)
    assert result.status.state is SourceState.OK
    assert [s.started for s in result.studies] == DATES
    a = next(t for t in result.tracks if t.track_id == UID_A)
    assert [o.study_date for o in a.observations] == DATES and a.growth is not None
    b = next(t for t in result.tracks if t.track_id == UID_B)
    assert b.observations[0].position is not None  # SCOORD placed with WADO-RS metadata of the CT slice


def test_sr_filed_in_a_study_of_its_own_is_attributed_to_the_imaged_study(tmp_path: Path) -> None:
    first, second = _round(0, "LC-PIPE-2"), _round(1, "LC-PIPE-2")
    ct_study = second[0].StudyInstanceUID
    second[-1] = quirk(second[-1], lambda d: setattr(d, "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.777"))
    write(tmp_path, [*first, *second])
    result = load(DicomFolderSource(tmp_path), ids=("LC-PIPE-2",))
    assert {t.status for t in result.tracks} == {TrackStatus.PERSISTENT}
    assert all(t.latest.study_instance_uid == ct_study for t in result.tracks)
    assert any(n.code is NoteCode.CONFLICT and "attributed to the imaged study" in n.message for n in result.notes)
