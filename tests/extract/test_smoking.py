from datetime import date

import pytest

from risk import codes
from risk.domain.provenance import IngestionNote, NoteCode
from risk.domain.smoking import SmokingHistory, SmokingStatus
from risk.extract.smoking import quit_date_from_years
from risk.extract.snapshot import snapshot_from_resources
from tests.extract.builders import PID, observation, patient, quantity, smoking_status

AS_OF = date(2025, 1, 1)


def smoking(*resources: dict) -> tuple[SmokingHistory | None, tuple[IngestionNote, ...]]:
    snap = snapshot_from_resources([patient(), *resources], patient_id=PID, as_of=AS_OF)
    return snap.smoking, snap.notes


def test_no_smoking_record_gives_none() -> None:
    history, _ = smoking(observation(codes.BMI, **quantity(25, "kg/m2")))
    assert history is None


def test_us_core_status_answers() -> None:
    for answer, status in [(codes.CURRENT_EVERY_DAY_SMOKER, SmokingStatus.CURRENT),
                           (codes.CURRENT_SOME_DAY_SMOKER, SmokingStatus.CURRENT),
                           (codes.SMOKER_STATUS_UNKNOWN, SmokingStatus.CURRENT),
                           (codes.CURRENT_LIGHT_SMOKER, SmokingStatus.CURRENT),
                           (codes.FORMER_SMOKER, SmokingStatus.FORMER),
                           (codes.NEVER_SMOKER, SmokingStatus.NEVER),
                           (codes.UNKNOWN_IF_EVER_SMOKED, SmokingStatus.UNKNOWN)]:
        history, _ = smoking(smoking_status(answer))
        assert history is not None and history.status is status, answer


def test_full_former_smoker_history_with_sources() -> None:
    history, notes = smoking(
        smoking_status(codes.FORMER_SMOKER, "2024-05-01", oid="st"),
        observation(codes.PACK_YEARS, "2024-05-01", oid="py", **quantity(32, "{pack-years}")),
        observation(codes.CIGARETTES_PER_DAY, "2024-05-01", oid="cpd", **quantity(20, "/d")),
        observation(codes.SMOKING_DURATION_YEARS, "2024-05-01", oid="dur", **quantity(32, "a")),
        observation(codes.SMOKING_QUIT_DATE, "2024-05-01", oid="q", valueDateTime="2015-01-01"),
    )
    assert history is not None
    assert (history.status, history.pack_years, history.cigarettes_per_day, history.smoking_duration_years,
            history.quit_date, history.pack_years_derived) == (
        SmokingStatus.FORMER, 32.0, 20.0, 32.0, date(2015, 1, 1), False)
    assert history.years_since_quit(AS_OF) == pytest.approx(10.0, abs=0.01)
    assert {s.reference for s in history.sources} == {f"Observation/{x}" for x in ("st", "py", "cpd", "dur", "q")}
    assert not [n for n in notes if n.code is NoteCode.CONFLICT]


def test_packs_per_day_and_derived_pack_years() -> None:
    history, _ = smoking(
        smoking_status(codes.CURRENT_EVERY_DAY_SMOKER),
        observation(codes.CIGARETTE_PACKS_PER_DAY, **quantity(1.5, "{packs}/d")),
        observation(codes.SMOKING_DURATION_YEARS, **quantity(40, "a")),
    )
    assert history is not None
    assert history.cigarettes_per_day == 30.0
    assert history.pack_years == 60.0 and history.pack_years_derived


def test_implausible_derived_pack_years_not_used() -> None:
    history, notes = smoking(
        smoking_status(codes.CURRENT_EVERY_DAY_SMOKER),
        observation(codes.CIGARETTES_PER_DAY, **quantity(200, "/d")),
        observation(codes.SMOKING_DURATION_YEARS, **quantity(60, "a")),
    )
    assert history is not None and history.pack_years is None
    assert NoteCode.OUT_OF_RANGE in [n.code for n in notes]


def test_most_recent_status_wins_and_conflict_is_noted() -> None:
    history, notes = smoking(
        smoking_status(codes.NEVER_SMOKER, "2018-01-01", oid="old"),
        smoking_status(codes.FORMER_SMOKER, "2023-01-01", oid="new"),
    )
    assert history is not None and history.status is SmokingStatus.FORMER
    assert history.conflicts and "never-smoker and ever-smoker" in history.conflicts[0]
    conflict = [n for n in notes if n.code is NoteCode.CONFLICT]
    assert len(conflict) == 1 and conflict[0].source == "Observation/new"


def test_current_then_former_is_a_transition_not_a_conflict() -> None:
    history, _ = smoking(smoking_status(codes.CURRENT_EVERY_DAY_SMOKER, "2018-01-01"),
                         smoking_status(codes.FORMER_SMOKER, "2023-01-01"))
    assert history is not None and history.status is SmokingStatus.FORMER and history.conflicts == ()


def test_never_smoker_drops_intensity_and_sets_zero_pack_years() -> None:
    history, _ = smoking(
        smoking_status(codes.FORMER_SMOKER, "2010-01-01"),
        observation(codes.PACK_YEARS, "2010-01-01", **quantity(10)),
        observation(codes.CIGARETTES_PER_DAY, "2010-01-01", **quantity(10)),
        smoking_status(codes.NEVER_SMOKER, "2024-01-01"),
    )
    assert history is not None
    assert (history.status, history.pack_years, history.cigarettes_per_day) == (SmokingStatus.NEVER, 0.0, None)
    assert any("ignored cigarettes/day, pack-years" in c for c in history.conflicts)


def test_current_smoker_drops_quit_date() -> None:
    history, _ = smoking(smoking_status(codes.CURRENT_EVERY_DAY_SMOKER, "2024-01-01"),
                         observation(codes.SMOKING_QUIT_DATE, "2020-01-01", valueDateTime="2019-06"))
    assert history is not None and history.quit_date is None and history.years_since_quit(AS_OF) == 0.0
    assert any("ignored quit date 2019-06-01" in c for c in history.conflicts)


def test_years_since_quit_becomes_a_quit_date_and_latest_candidate_wins() -> None:
    history, _ = smoking(
        smoking_status(codes.FORMER_SMOKER),
        observation(codes.SMOKING_QUIT_DATE, "2019-01-01", valueDateTime="2001-01-01"),
        observation(codes.YEARS_SINCE_QUIT, "2024-01-01", **quantity(10, "a")),
    )
    assert history is not None
    assert history.quit_date == quit_date_from_years(date(2024, 1, 1), 10.0) == date(2014, 1, 1)


def test_same_day_disagreement_and_decreasing_pack_years_are_conflicts() -> None:
    history, _ = smoking(
        smoking_status(codes.FORMER_SMOKER),
        observation(codes.PACK_YEARS, "2020-01-01", oid="a", **quantity(30)),
        observation(codes.PACK_YEARS, "2020-01-01", oid="b", **quantity(35)),
        observation(codes.PACK_YEARS, "2022-01-01", oid="c", **quantity(12)),
    )
    assert history is not None and history.pack_years == 12.0
    assert any("different values on 2020-01-01" in c for c in history.conflicts)
    assert any("pack-years decreased" in c for c in history.conflicts)


def test_pack_years_without_status_is_unknown_status() -> None:
    history, _ = smoking(observation(codes.PACK_YEARS_CALCULATED, **quantity(25, "{pack-years}")))
    assert history is not None and history.status is SmokingStatus.UNKNOWN and history.pack_years == 25.0
