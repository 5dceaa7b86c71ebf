"""Nodule tracking: linking by tracking UID, by position and size within the documented tolerances, status, growth."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import pytest

from risk.domain import (
    Lobe,
    NoduleObservation,
    NoteCode,
    PatientPosition,
    TrackLinkage,
    TrackStatus,
    dicom_ref,
)
from risk.guidelines.growth import GrowthCategory, VolumeMethod
from risk.imaging import tracking
from risk.imaging.tracking import track_nodules

D1, D2, D3 = date(2022, 1, 10), date(2023, 1, 10), date(2024, 1, 10)
STUDY = {D1: "1.2.3.1", D2: "1.2.3.2", D3: "1.2.3.3"}


def obs(day: date, xyz: tuple[float, float, float] | None, *, uid: str | None = None, frame: str | None = None,
        diameter: float | None = 6.0, volume: float | None = None, lobe: Lobe | None = Lobe.RUL,
        sr: str | None = None, long_axis: float | None = None, short_axis: float | None = None,
        name: str | None = None) -> NoduleObservation:
    study = STUDY[day]
    position = None if xyz is None else PatientPosition(*xyz, frame_of_reference_uid=frame or f"{study}.9")
    return NoduleObservation(study_instance_uid=study, study_date=day, source=dicom_ref(sr or f"{study}.7", day),
                             diameter_mm=diameter, volume_mm3=volume, long_axis_mm=long_axis,
                             short_axis_mm=short_axis, lobe=lobe, position=position, tracking_uid=uid,
                             tracking_identifier=name)


def test_tracking_uid_links_across_studies_whatever_the_position() -> None:
    result = track_nodules([obs(D1, (0, 0, 0), uid="9.1", volume=100.0), obs(D2, (80, 80, 80), uid="9.1",
                                                                                volume=150.0)])
    (track,) = result.tracks
    assert track.track_id == "9.1" and track.linkage is TrackLinkage.TRACKING_UID
    assert track.status is TrackStatus.PERSISTENT and len(track.observations) == 2
    assert track.growth is not None and track.growth.volume_method is VolumeMethod.MEASURED
    assert track.growth.vdt_days == pytest.approx(365 * math.log(2) / math.log(1.5))


def test_different_tracking_uids_are_never_merged() -> None:
    result = track_nodules([obs(D1, (0, 0, 0), uid="9.1", frame="F"), obs(D2, (0, 0, 0), uid="9.2", frame="F")])
    assert [t.status for t in result.tracks] == [TrackStatus.RESOLVED, TrackStatus.NEW]


def test_same_frame_of_reference_links_within_tolerance() -> None:
    # 6 mm nodules: tolerance 10 + 0.5 × 6 = 13 mm
    near = track_nodules([obs(D1, (0, 0, 0), frame="F"), obs(D2, (12.9, 0, 0), frame="F")])
    assert len(near.tracks) == 1 and near.tracks[0].linkage is TrackLinkage.POSITION_AND_SIZE
    assert "12.9 mm apart (tolerance 13.0 mm)" in near.tracks[0].notes[0]
    assert "same frame of reference" in near.tracks[0].notes[0]
    far = track_nodules([obs(D1, (0, 0, 0), frame="F"), obs(D2, (13.1, 0, 0), frame="F")])
    assert [t.status for t in far.tracks] == [TrackStatus.RESOLVED, TrackStatus.NEW]


def test_size_and_lobe_must_be_compatible() -> None:
    # 4 mm then 25 mm at the same place: 25 > 2.5 × 4 + 1.5 = 11.5 → two nodules
    grown = track_nodules([obs(D1, (0, 0, 0), frame="F", diameter=4.0), obs(D2, (1, 0, 0), frame="F",
                                                                            diameter=25.0)])
    assert len(grown.tracks) == 2
    plausible = track_nodules([obs(D1, (0, 0, 0), frame="F", diameter=4.0), obs(D2, (1, 0, 0), frame="F",
                                                                                diameter=11.0)])
    assert len(plausible.tracks) == 1
    other_lobe = track_nodules([obs(D1, (0, 0, 0), frame="F"), obs(D2, (1, 0, 0), frame="F", lobe=Lobe.RML)])
    assert len(other_lobe.tracks) == 2


def test_tracking_uid_anchors_align_different_frames_of_reference() -> None:
    shift = (30.0, -20.0, 45.0)  # patient positioned differently: far beyond the matching tolerance
    a1, b1 = obs(D1, (0, 0, 0), uid="9.1"), obs(D1, (40, 10, -30), name="untracked", diameter=8.0)
    a2 = obs(D2, (shift[0] + 1, shift[1], shift[2]), uid="9.1")
    b2 = obs(D2, (40 + shift[0], 10 + shift[1] + 2, -30 + shift[2]), diameter=8.5)
    result = track_nodules([a1, b1, a2, b2])
    assert len(result.tracks) == 2
    linked = next(t for t in result.tracks if t.linkage is TrackLinkage.POSITION_AND_SIZE)
    assert [o.diameter_mm for o in linked.observations] == [8.0, 8.5]
    assert "1 tracking-UID anchor(s)" in linked.notes[0]


def test_constellation_aligns_when_no_uid_survives() -> None:
    shift = (12.0, -25.0, 30.0)
    before = [obs(D1, (0, 0, 0), diameter=6.0), obs(D1, (50, 20, 10), diameter=9.0, lobe=Lobe.RUL)]
    after = [obs(D2, (shift[0] + 1, shift[1], shift[2]), diameter=6.5),
             obs(D2, (50 + shift[0], 20 + shift[1] - 1, 10 + shift[2]), diameter=9.5)]
    result = track_nodules(before + after)
    assert len(result.tracks) == 2
    assert all(t.status is TrackStatus.PERSISTENT for t in result.tracks)
    assert all("constellation of 2 nodules" in t.notes[0] for t in result.tracks)
    assert sorted(t.latest.diameter_mm or 0 for t in result.tracks) == [6.5, 9.5]


def test_single_nodule_in_each_study_links_on_lobe_and_size_only() -> None:
    result = track_nodules([obs(D1, (0, 0, 0)), obs(D2, (40, 40, 40), diameter=7.0)])
    (track,) = result.tracks
    assert "by lobe and size only: the only pair of nodules" in track.notes[0]
    # a second nodule elsewhere does not prevent it: the pair is still the only compatible one
    more = track_nodules([obs(D1, (0, 0, 0)), obs(D2, (40, 40, 40), diameter=7.0),
                          obs(D2, (-40, 0, 0), lobe=Lobe.LLL, uid="9.9")])
    assert sorted(len(t.observations) for t in more.tracks) == [1, 2]
    # two candidates in the same lobe: no registration, no link
    two = track_nodules([obs(D1, (0, 0, 0)), obs(D2, (40, 40, 40), diameter=7.0),
                         obs(D2, (-40, 0, 0), diameter=6.5, sr="1.2.3.2.8")])
    assert sorted(len(t.observations) for t in two.tracks) == [1, 1, 1]
    unknown_lobe = track_nodules([obs(D1, (0, 0, 0), lobe=None), obs(D2, (40, 40, 40), lobe=None)])
    assert len(unknown_lobe.tracks) == 2  # nothing to register the two frames with


def test_unaligned_frames_compare_patient_coordinates_with_the_wider_tolerance() -> None:
    # different frames of reference, no UID, lobes unknown: 20 + 0.5 × 6 = 23 mm
    near = track_nodules([obs(D1, (0, 0, 0), lobe=None), obs(D2, (0, 22.5, 0), lobe=None)])
    (track,) = near.tracks
    assert "without registration: 22.5 mm apart in patient coordinates (tolerance 23.0 mm;" in track.notes[0]
    far = track_nodules([obs(D1, (0, 0, 0), lobe=None), obs(D2, (0, 23.5, 0), lobe=None)])
    assert len(far.tracks) == 2
    # the closer of two same-lobe candidates, when clearly closer
    two = track_nodules([obs(D1, (80, -33, -12)), obs(D2, (79, -38, -7)), obs(D2, (83, -14, 9), diameter=8.0,
                                                                               sr="1.2.3.2.8")])
    assert sorted(len(t.observations) for t in two.tracks) == [1, 2]


def test_ambiguous_candidates_are_not_linked() -> None:
    result = track_nodules([obs(D1, (0, 0, 0), frame="F"), obs(D1, (6, 0, 0), frame="F", sr="1.2.3.1.8"),
                            obs(D2, (3, 0, 0), frame="F")])
    assert len(result.tracks) == 3
    assert any(n.code is NoteCode.CONFLICT and "more than one candidate" in n.message for n in result.notes)


def test_status_new_persistent_resolved_baseline() -> None:
    only = track_nodules([obs(D1, (0, 0, 0), uid="9.1")])
    assert only.tracks[0].status is TrackStatus.BASELINE and only.tracks[0].linkage is TrackLinkage.SINGLE
    result = track_nodules([
        obs(D1, (0, 0, 0), uid="9.1"), obs(D2, (0, 0, 0), uid="9.1"), obs(D3, (0, 0, 0), uid="9.1"),
        obs(D1, (30, 0, 0), uid="9.2"), obs(D2, (30, 0, 0), uid="9.2"),  # gone on the latest study
        obs(D3, (-30, 0, 0), uid="9.3"),  # first seen on the latest study
        obs(D1, (0, 30, 0), uid="9.4"), obs(D3, (0, 30, 0), uid="9.4"),  # missed once, seen again
    ])
    status = {t.track_id: t.status for t in result.tracks}
    assert status == {"9.1": TrackStatus.PERSISTENT, "9.2": TrackStatus.RESOLVED, "9.3": TrackStatus.NEW,
                      "9.4": TrackStatus.PERSISTENT}


def test_a_report_of_no_nodules_resolves_earlier_ones() -> None:
    result = track_nodules([obs(D1, (0, 0, 0), uid="9.1")], evaluated_studies=[(STUDY[D2], D2)])
    assert result.tracks[0].status is TrackStatus.RESOLVED


def test_duplicates_within_a_study() -> None:
    same_uid = track_nodules([obs(D1, (0, 0, 0), uid="9.1", volume=100.0), obs(D1, (0, 0, 0), uid="9.1",
                                                                               sr="1.2.3.1.8")])
    assert len(same_uid.tracks) == 1 and same_uid.tracks[0].latest.volume_mm3 == 100.0
    assert [n.code for n in same_uid.notes] == [NoteCode.DUPLICATE]
    two_srs = track_nodules([obs(D1, (0, 0, 0), frame="F"), obs(D1, (1, 1, 0), frame="F", sr="1.2.3.1.8")])
    assert len(two_srs.tracks) == 1
    one_sr = track_nodules([obs(D1, (0, 0, 0), frame="F"), obs(D1, (1, 1, 0), frame="F")])
    assert len(one_sr.tracks) == 2  # one report listing two findings: two nodules


def test_growth_volume_method_follows_the_available_measures() -> None:
    axes = track_nodules([obs(D1, (0, 0, 0), uid="9.1", long_axis=8.0, short_axis=6.0, diameter=None),
                          obs(D2, (0, 0, 0), uid="9.1", long_axis=10.0, short_axis=8.0, diameter=None)])
    growth = axes.tracks[0].growth
    assert growth is not None and growth.volume_method is VolumeMethod.ELLIPSOID_2_AXES
    assert growth.v1_mm3 == pytest.approx(math.pi / 6 * 8 * 6 * 6)
    spheres = track_nodules([obs(D1, (0, 0, 0), uid="9.1", diameter=6.0, volume=110.0),
                             obs(D2, (0, 0, 0), uid="9.1", diameter=5.0)])
    growth = spheres.tracks[0].growth
    assert growth is not None and growth.volume_method is VolumeMethod.SPHERE
    assert growth.category is GrowthCategory.SHRINKING and growth.vdt_days is None


def test_growth_uses_the_last_two_dated_observations() -> None:
    result = track_nodules([obs(D1, (0, 0, 0), uid="9.1", volume=100.0), obs(D2, (0, 0, 0), uid="9.1", volume=100.0),
                            obs(D3, (0, 0, 0), uid="9.1", volume=200.0)])
    growth = result.tracks[0].growth
    assert growth is not None and growth.interval_days == (D3 - D2).days
    assert growth.vdt_days == pytest.approx(365.0) and growth.category is GrowthCategory.GROWTH_VDT_UNDER_400


def test_positionless_untracked_observation_starts_a_track_with_a_note() -> None:
    result = track_nodules([obs(D1, (0, 0, 0)), obs(D2, None)])
    assert len(result.tracks) == 2
    assert any("neither a tracking UID nor a position" in n.message for n in result.notes)


def test_track_ids_are_stable_without_uids() -> None:
    first = track_nodules([obs(D1, (0, 0, 0)), obs(D2, (1, 0, 0))])
    again = track_nodules([obs(D1, (0, 0, 0)), obs(D2, (1, 0, 0))])
    assert first.tracks[0].track_id == again.tracks[0].track_id
    assert first.tracks[0].track_id.startswith("local-")


def test_tolerances_are_the_documented_numbers() -> None:
    assert (tracking.MATCH_DISTANCE_MM, tracking.MATCH_DISTANCE_PER_DIAMETER) == (10.0, 0.5)
    assert (tracking.SIZE_RATIO_MIN, tracking.SIZE_RATIO_MAX, tracking.SIZE_SLACK_MM) == (0.4, 2.5, 1.5)
    assert (tracking.AMBIGUITY_RATIO, tracking.UNALIGNED_MATCH_DISTANCE_MM) == (1.5, 20.0)
    assert replace(obs(D1, (0, 0, 0)), diameter_mm=None, volume_mm3=None, long_axis_mm=4.0).longest_diameter_mm == 4.0
