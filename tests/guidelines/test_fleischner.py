"""Fleischner Society 2017 (shared/reference/clinical-models.md §4): every row at and around its bounds."""

from __future__ import annotations

from typing import Any

import pytest

from risk.errors import InvalidInput
from risk.guidelines.fleischner import FleischnerInput, compute_fleischner
from risk.guidelines.registry import get_calculator


def run(*nodules: dict[str, Any], **kw: Any) -> Any:
    data = {"age": 60, "risk": "low", "nodules": list(nodules), **kw}
    return compute_fleischner(FleischnerInput.model_validate(data))


def solid(size: float, **kw: Any) -> dict[str, Any]:
    return {"composition": "solid", "mean_diameter_mm": size, **kw}


def steps(result: Any) -> list[tuple[int, int, bool]]:
    return [(s.min_months, s.max_months, s.optional) for s in result.outputs.follow_up]


SINGLE_LOW = {5: [], 6: [(6, 12, False), (18, 24, True)], 8: [(6, 12, False), (18, 24, True)],
              9: [(3, 3, True)]}
SINGLE_HIGH = {5: [(12, 12, True)], 6: [(6, 12, False), (18, 24, False)], 8: [(6, 12, False), (18, 24, False)],
               9: [(3, 3, True)]}
MULTIPLE_LOW = {5: [], 6: [(3, 6, False), (18, 24, True)], 8: [(3, 6, False), (18, 24, True)],
                9: [(3, 6, False), (18, 24, True)]}
MULTIPLE_HIGH = {5: [(12, 12, True)], 6: [(3, 6, False), (18, 24, False)], 8: [(3, 6, False), (18, 24, False)],
                 9: [(3, 6, False), (18, 24, False)]}


@pytest.mark.parametrize("size", [5, 6, 8, 9])
@pytest.mark.parametrize(("risk", "multiple", "table"), [
    ("low", False, SINGLE_LOW), ("high", False, SINGLE_HIGH), ("low", True, MULTIPLE_LOW),
    ("high", True, MULTIPLE_HIGH),
])
def test_solid_rows(size: int, risk: str, multiple: bool, table: dict[int, list[tuple[int, int, bool]]]) -> None:
    nodules = [solid(size)] + ([solid(4)] if multiple else [])
    result = run(*nodules, risk=risk)
    assert steps(result) == table[size]
    assert result.outputs.governing_nodule_index == 0
    row = result.outputs.nodules[0].row
    assert row.startswith("multiple" if multiple else "single") and f"{risk} risk" in row


@pytest.mark.parametrize(("long", "short", "size", "band"), [
    (5.9, 5.0, 5, "<6"),   # 5.45 → 5
    (6.0, 5.0, 6, "6-8"),  # 5.5 → 6 (ties round up)
    (8.9, 8.0, 8, "6-8"),  # 8.45 → 8
    (9.0, 8.0, 9, ">8"),   # 8.5 → 9
])
def test_size_is_average_of_axes_rounded_to_nearest_mm(long: float, short: float, size: int, band: str) -> None:
    # Bankier 2017: average of long and short axes, rounded to the nearest millimetre.
    n = run({"composition": "solid", "long_axis_mm": long, "short_axis_mm": short}).outputs.nodules[0]
    assert (n.size_mm, n.size_band) == (size, band)


@pytest.mark.parametrize(("volume", "band"), [(99.9, "<6"), (100, "6-8"), (100.1, "6-8"), (249.9, "6-8"),
                                              (250, "6-8"), (250.1, ">8")])
def test_solid_volume_bands(volume: float, band: str) -> None:
    assert run({"composition": "solid", "volume_mm3": volume}).outputs.nodules[0].size_band == band


@pytest.mark.parametrize(("composition", "size", "expected"), [
    ("ground_glass", 5, []),
    ("ground_glass", 6, [(6, 12, False), (24, 24, False)]),
    ("part_solid", 5, []),
    ("part_solid", 6, [(3, 6, False), (12, 12, False)]),
])
def test_single_subsolid_rows(composition: str, size: int, expected: list[tuple[int, int, bool]]) -> None:
    result = run({"composition": composition, "mean_diameter_mm": size}, risk=None)
    assert steps(result) == expected
    if expected:
        assert result.outputs.follow_up[-1].relative_to == "previous_step"


@pytest.mark.parametrize(("size", "expected"), [
    (5, [(3, 6, False), (24, 24, True), (48, 48, True)]),
    (6, [(3, 6, False)]),
])
def test_multiple_subsolid_rows(size: int, expected: list[tuple[int, int, bool]]) -> None:
    result = run({"composition": "ground_glass", "mean_diameter_mm": size},
                 {"composition": "part_solid", "mean_diameter_mm": 4})
    assert steps(result) == expected and result.outputs.nodules[0].row.startswith("multiple subsolid")


@pytest.mark.parametrize(("volume", "band"), [(99.9, "<6"), (100, ">=6")])
def test_subsolid_volume_bands(volume: float, band: str) -> None:
    n = run({"composition": "ground_glass", "volume_mm3": volume}, risk=None).outputs.nodules[0]
    assert n.size_band == band


def test_single_or_multiple_is_counted_per_kind() -> None:
    result = run(solid(7), {"composition": "ground_glass", "mean_diameter_mm": 7})
    assert [n.row.split()[0] for n in result.outputs.nodules] == ["single", "single"]


def test_governing_nodule_is_the_most_intensive_recommendation() -> None:
    result = run(solid(4), solid(7), solid(12), risk="high")
    assert result.outputs.governing_nodule_index == 2
    result = run(solid(7), {"composition": "part_solid", "mean_diameter_mm": 8, "solid_component_mm": 6})
    assert result.outputs.governing_nodule_index == 1
    assert any("highly suspicious" in n for n in result.outputs.nodules[1].notes)
    assert result.outputs.next_follow_up_months == (3, 6) and result.outputs.next_follow_up_optional is False


def test_no_follow_up_has_no_window() -> None:
    out = run(solid(4)).outputs
    assert out.follow_up == () and out.next_follow_up_months is None and out.recommendation == "No routine follow-up."


@pytest.mark.parametrize(("kw", "reason"), [
    ({"age": 34.9}, "under 35"), ({"screening": True}, "screening"), ({"immunocompromised": True}, "immunocompromised"),
    ({"known_primary_cancer": True}, "known primary cancer"),
])
def test_out_of_scope_abstains_with_reason(kw: dict[str, Any], reason: str) -> None:
    result = run(solid(7), **kw)
    assert result.outputs is None and reason in result.abstentions[0]


def test_age_35_is_in_scope_and_reasons_accumulate() -> None:
    assert run(solid(7), age=35).outputs is not None
    assert len(run(solid(7), age=30, screening=True, known_primary_cancer=True).abstentions) == 3


def test_result_envelope() -> None:
    result = run(solid(7))
    assert result.model == "fleischner" and result.version == "2017" and "Radiology 2017" in result.citation


@pytest.mark.parametrize(("data", "field"), [
    ({"age": 60, "nodules": [{"composition": "solid", "mean_diameter_mm": 5}]}, "risk"),
    ({"age": 60, "risk": "low", "nodules": []}, "nodules"),
    ({"age": 60, "risk": "low", "nodules": [{"composition": "solid"}]}, "nodules[0].long_axis_mm"),
    ({"age": 60, "risk": "low", "nodules": [{"composition": "solid", "long_axis_mm": 5}]}, "nodules[0].short_axis_mm"),
    ({"age": 60, "risk": "low", "nodules": [{"composition": "solid", "mean_diameter_mm": 5, "volume_mm3": 60}]},
     "nodules[0].volume_mm3"),
    ({"age": 60, "risk": "medium", "nodules": [{"composition": "solid", "mean_diameter_mm": 5}]}, "risk"),
    ({"age": 60, "risk": "low", "nodules": [{"composition": "solid", "mean_diameter_mm": 5,
                                             "solid_component_mm": 3}]}, "nodules[0].solid_component_mm"),
])
def test_bad_input_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        get_calculator("fleischner").run(data)
    assert info.value.field == field
