"""Screening eligibility: USPSTF 2021, CMS 2022, ACS 2023 (shared/reference/clinical-models.md §5)."""

from __future__ import annotations

from typing import Any

import pytest

from risk.domain.assessment import ScreeningProgram
from risk.errors import InvalidInput
from risk.guidelines.eligibility import EligibilityInput, compute_eligibility, program_decision
from risk.guidelines.registry import get_calculator


def decide(**kw: Any) -> Any:
    data: dict[str, Any] = dict(age=65, smoking_status="current", cigarettes_per_day=20, smoking_duration_years=30)
    data.update(kw)
    result = compute_eligibility(EligibilityInput.model_validate({k: v for k, v in data.items() if v is not None}))
    assert result.outputs is not None
    return result.outputs


def flags(out: Any) -> tuple[bool, bool, bool]:
    return out.uspstf_2021.eligible, out.cms_2022.eligible, out.acs_2023.eligible


@pytest.mark.parametrize(("cpd", "years", "pack_years"), [(20, 20, 20.0), (10, 40, 20.0), (30, 25, 37.5),
                                                          (15, 26, 19.5)])
def test_pack_years_is_cigarettes_per_day_over_20_times_years(cpd: float, years: float, pack_years: float) -> None:
    out = decide(cigarettes_per_day=cpd, smoking_duration_years=years)
    assert out.pack_years == pytest.approx(pack_years) and out.pack_years_derived


@pytest.mark.parametrize(("age", "expected"), [
    (49.9, (False, False, False)), (50, (True, True, True)), (50.1, (True, True, True)),
    (70, (True, True, True)), (71, (True, True, True)),
    (76.9, (True, True, True)), (77, (True, True, True)), (77.1, (True, False, True)),
    (79.9, (True, False, True)), (80, (True, False, True)), (80.1, (False, False, False)),
])
def test_age_bounds_inclusive(age: float, expected: tuple[bool, bool, bool]) -> None:
    # CMS decision memo CAG-00439R: 50-77. One news page (ONS Voice) misprints 50-70; age 71-77 must be eligible.
    assert flags(decide(age=age)) == expected


@pytest.mark.parametrize(("pack_years", "eligible"), [(19.9, False), (20, True), (20.1, True)])
def test_twenty_pack_years_just_below_on_and_above(pack_years: float, eligible: bool) -> None:
    out = decide(cigarettes_per_day=None, smoking_duration_years=None, pack_years=pack_years)
    assert flags(out) == (eligible,) * 3
    assert not out.pack_years_derived


@pytest.mark.parametrize(("years", "uspstf_cms"), [(14.9, True), (15, False), (15.1, False), (0, True)])
def test_exactly_fifteen_years_since_quitting_is_not_eligible(years: float, uspstf_cms: bool) -> None:
    # Our rule (documented in eligibility.py): eligible only when years_since_quit < 15, following the USPSTF
    # discontinuation clause ("once a person has not smoked for 15 years") over "quit within the past 15 years";
    # applied to CMS ("within the last 15 years") too. ACS 2023 has no limit.
    out = decide(smoking_status="former", years_since_quit=years, smoking_duration_years=30)
    assert flags(out) == (uspstf_cms, uspstf_cms, True)
    if not uspstf_cms:
        assert "15 years" in out.uspstf_2021.reason


def test_acs_has_no_years_since_quit_limit() -> None:
    out = decide(age=75, smoking_status="former", years_since_quit=40, smoking_duration_years=30)
    assert flags(out) == (False, False, True)
    assert "no limit" in out.acs_2023.reason


def test_never_smoker_is_not_eligible_anywhere() -> None:
    out = decide(smoking_status="never", cigarettes_per_day=None, smoking_duration_years=None)
    assert flags(out) == (False, False, False)
    assert out.pack_years == 0 and "never smoked" in out.cms_2022.reason


def test_every_decision_has_a_reason_and_cms_notes_shared_decision_making() -> None:
    out = decide()
    assert out.uspstf_2021.reason.startswith("eligible:") and "age 65" in out.uspstf_2021.reason
    assert any("shared decision-making" in n for n in out.cms_2022.notes)
    failing = decide(age=45, pack_years=10, cigarettes_per_day=None, smoking_duration_years=None)
    assert "age 45" in failing.acs_2023.reason and "10.0 pack-years" in failing.acs_2023.reason


def test_recorded_pack_years_win_over_derived_with_a_warning() -> None:
    result = compute_eligibility(EligibilityInput(age=60, smoking_status="current", cigarettes_per_day=10,
                                                  smoking_duration_years=20, pack_years=25))
    assert result.outputs is not None and result.outputs.pack_years == 25
    assert result.warnings and "10.0" in result.warnings[0]


@pytest.mark.parametrize(("data", "field"), [
    ({"age": 60, "smoking_status": "former", "pack_years": 30}, "years_since_quit"),
    ({"age": 60, "smoking_status": "current"}, "cigarettes_per_day"),
    ({"age": 60, "smoking_status": "current", "cigarettes_per_day": 20}, "smoking_duration_years"),
    ({"age": 60, "smoking_status": "current", "pack_years": 30, "years_since_quit": 3}, "years_since_quit"),
    ({"age": 60, "smoking_status": "never", "pack_years": 3}, "pack_years"),
    ({"age": 60, "smoking_status": "sometimes", "pack_years": 3}, "smoking_status"),
    ({"age": -1, "smoking_status": "never"}, "age"),
])
def test_bad_input_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        get_calculator("eligibility").run(data)
    assert info.value.field == field


def test_scalar_decision_needs_quit_years_only_where_it_matters() -> None:
    acs = program_decision(ScreeningProgram.ACS_2023, age=60, smoking_status="former", pack_years=30,
                           years_since_quit=None)
    assert acs.eligible
    with pytest.raises(ValueError, match="years_since_quit"):
        program_decision(ScreeningProgram.USPSTF_2021, age=60, smoking_status="former", pack_years=30,
                         years_since_quit=None)
