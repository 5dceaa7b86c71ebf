"""Domain types are valid once constructed, and errors name the argument."""

from __future__ import annotations

from datetime import date

import pytest

from risk.domain import (
    AdministrativeSex,
    Demographics,
    DueStatus,
    IngestionNote,
    Lobe,
    NoduleComposition,
    NoduleObservation,
    NoduleTrack,
    NoteCode,
    NoteSeverity,
    PatientSnapshot,
    Recommendation,
    RecommendationKind,
    RiskEstimate,
    SmokingHistory,
    SmokingStatus,
    SourceKind,
    SourceRef,
    TrackLinkage,
    TrackStatus,
    fhir_ref,
    pack_years_from,
)

SRC = fhir_ref("Observation", "o1", date(2025, 1, 1))


def _demo(birth: date = date(1960, 6, 15)) -> Demographics:
    return Demographics(birth_date=birth, sex=AdministrativeSex.FEMALE, source=fhir_ref("Patient", "p1"))


def test_age_counts_completed_years() -> None:
    d = _demo()
    assert d.age_years(date(2025, 6, 14)) == 64
    assert d.age_years(date(2025, 6, 15)) == 65


def test_source_ref_validates() -> None:
    with pytest.raises(ValueError, match='"reference"'):
        SourceRef(SourceKind.FHIR, "  ")
    with pytest.raises(TypeError, match='"kind"'):
        SourceRef("fhir", "Patient/1")  # type: ignore[arg-type]
    assert SRC.age_days(date(2025, 1, 11)) == 10


def test_pack_years_uses_20_cigarettes_per_pack() -> None:
    assert pack_years_from(30, 40) == pytest.approx(60.0)


def test_smoking_history_derives_pack_years_and_says_so() -> None:
    h = SmokingHistory.build(SmokingStatus.FORMER, (SRC,), cigarettes_per_day=20, smoking_duration_years=30,
                             quit_date=date(2015, 1, 1))
    assert h.pack_years == 30.0 and h.pack_years_derived
    assert h.years_since_quit(date(2025, 1, 1)) == pytest.approx(10.0, abs=0.01)
    recorded = SmokingHistory.build(SmokingStatus.CURRENT, (SRC,), cigarettes_per_day=20,
                                    smoking_duration_years=30, pack_years=35)
    assert recorded.pack_years == 35 and not recorded.pack_years_derived
    assert recorded.years_since_quit(date(2025, 1, 1)) == 0.0


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"status": SmokingStatus.NEVER, "pack_years": 5.0}, "pack_years"),
    ({"status": SmokingStatus.CURRENT, "quit_date": date(2020, 1, 1)}, "quit_date"),
    ({"status": SmokingStatus.FORMER, "cigarettes_per_day": -1.0}, "cigarettes_per_day"),
    ({"status": SmokingStatus.FORMER, "smoking_duration_years": float("nan")}, "smoking_duration_years"),
])
def test_smoking_history_rejects_inconsistent_values(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        SmokingHistory(sources=(SRC,), **kwargs)  # type: ignore[arg-type]


def test_smoking_history_needs_a_source() -> None:
    with pytest.raises(ValueError, match="sources"):
        SmokingHistory(status=SmokingStatus.NEVER, sources=())


def _obs(day: date, **kw: object) -> NoduleObservation:
    base: dict[str, object] = {"study_instance_uid": "1.2.3", "study_date": day,
                               "source": SourceRef(SourceKind.DICOM, "urn:dicom:uid:1.2.3.4", day),
                               "diameter_mm": 8.0}
    base.update(kw)
    return NoduleObservation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "named"), [
    ({"diameter_mm": -2.0}, "diameter_mm"),
    ({"diameter_mm": None, "long_axis_mm": None, "volume_mm3": None}, "diameter_mm"),
    ({"long_axis_mm": 5.0, "short_axis_mm": 6.0}, "short_axis_mm"),
    ({"ai_malignancy_probability": 1.5}, "ai_malignancy_probability"),
    ({"composition": NoduleComposition.NONSOLID, "solid_component_mm": 2.0}, "solid_component_mm"),
])
def test_nodule_observation_validation(kw: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        _obs(date(2024, 1, 1), **kw)


def test_nodule_observation_properties() -> None:
    o = _obs(date(2024, 1, 1), diameter_mm=None, long_axis_mm=9.0, short_axis_mm=7.0, lobe=Lobe.LUL)
    assert o.longest_diameter_mm == 9.0
    assert o.lobe is not None and o.lobe.is_upper_lobe
    assert not o.spiculated


def test_track_requires_date_order() -> None:
    a, b = _obs(date(2024, 1, 1)), _obs(date(2025, 1, 1))
    t = NoduleTrack("t1", (a, b), TrackStatus.PERSISTENT, TrackLinkage.TRACKING_UID)
    assert t.latest is b and t.first is a
    with pytest.raises(ValueError, match="observations"):
        NoduleTrack("t1", (b, a), TrackStatus.PERSISTENT, TrackLinkage.TRACKING_UID)


def test_snapshot_as_of_cannot_precede_birth() -> None:
    with pytest.raises(ValueError, match="as_of"):
        PatientSnapshot(patient_id="p1", as_of=date(1950, 1, 1), demographics=_demo())
    snap = PatientSnapshot(patient_id="p1", as_of=date(2025, 1, 1), demographics=_demo(),
                           notes=(IngestionNote(NoteSeverity.ERROR, NoteCode.UPSTREAM_UNAVAILABLE, "fhir",
                                                "timed out"),))
    assert snap.age_years == 64 and snap.has_errors


def test_recommendation_due_status_consistency() -> None:
    with pytest.raises(ValueError, match="status"):
        Recommendation(RecommendationKind.FOLLOW_UP_LDCT, "LDCT", "Lung-RADS v2022", None, DueStatus.DUE)
    r = Recommendation(RecommendationKind.FOLLOW_UP_LDCT, "LDCT", "Lung-RADS v2022", date(2025, 1, 1),
                       DueStatus.OVERDUE)
    assert r.status is DueStatus.OVERDUE


def test_risk_estimate_interval_must_bracket() -> None:
    with pytest.raises(ValueError, match="interval"):
        RiskEstimate("m", "1", "lung cancer", 0.1, 6, "c", interval=(0.2, 0.3))
    with pytest.raises(ValueError, match="probability"):
        RiskEstimate("m", "1", "lung cancer", 1.1, 6, "c")
