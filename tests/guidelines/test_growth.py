"""Volume, volume doubling time and NELSON growth (shared/reference/clinical-models.md §6)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.errors import InvalidInput
from risk.guidelines.growth import (
    GrowthCategory,
    GrowthResult,
    VdtInput,
    VolumeMethod,
    assess_growth,
    compute_vdt,
    ellipsoid_volume_mm3,
    sphere_volume_mm3,
    two_axis_ellipsoid_volume_mm3,
    volume_doubling_time_days,
)
from risk.guidelines.registry import get_calculator


@pytest.mark.parametrize(("d", "v"), [(4, 34), (6, 113), (8, 268), (10, 524), (15, 1767), (30, 14137)])
def test_sphere_volumes_match_the_lung_rads_equivalents(d: float, v: int) -> None:
    # Lung-RADS prints these volume equivalents of its diameter thresholds (pi/6 d^3, reference §3.2).
    assert round(sphere_volume_mm3(d)) == v


def test_ellipsoid_volumes() -> None:
    assert ellipsoid_volume_mm3(10, 8, 6) == pytest.approx(math.pi / 6 * 480)
    assert two_axis_ellipsoid_volume_mm3(10, 8) == pytest.approx(math.pi / 6 * 640)
    with pytest.raises(ValueError, match="b_mm"):
        ellipsoid_volume_mm3(10, 0, 6)


def test_schwartz_vdt_and_its_diameter_form() -> None:
    # VDT = t ln2 / ln(V2/V1); from sphere diameters t ln2 / (3 ln(D2/D1)): 8 → 10 mm in 90 days.
    vdt = volume_doubling_time_days(sphere_volume_mm3(8), sphere_volume_mm3(10), 90)
    assert vdt == pytest.approx(90 * math.log(2) / (3 * math.log(10 / 8)))
    assert vdt == pytest.approx(93.19, abs=0.01)
    assert volume_doubling_time_days(100, 200, 365) == pytest.approx(365)


@pytest.mark.parametrize(("v2", "category", "has_vdt"), [
    (90, GrowthCategory.SHRINKING, False), (100, GrowthCategory.NO_CHANGE, False),
    (124.9, GrowthCategory.BELOW_THRESHOLD, True), (125, GrowthCategory.GROWTH_VDT_UNDER_400, True),
    (125.1, GrowthCategory.GROWTH_VDT_UNDER_400, True),
])
def test_no_growth_and_shrinkage_are_categories_not_numbers(v2: float, category: GrowthCategory,
                                                            has_vdt: bool) -> None:
    # NELSON (van Klaveren, NEJM 2009): growth is a volume increase of at least 25 %.
    g = assess_growth(100, v2, 90)
    assert g.category is category
    assert (g.vdt_days is not None) is has_vdt


@pytest.mark.parametrize(("vdt", "category"), [
    (399, GrowthCategory.GROWTH_VDT_UNDER_400), (400, GrowthCategory.GROWTH_VDT_400_TO_600),
    (401, GrowthCategory.GROWTH_VDT_400_TO_600), (599, GrowthCategory.GROWTH_VDT_400_TO_600),
    (600, GrowthCategory.GROWTH_VDT_400_TO_600), (601, GrowthCategory.GROWTH_VDT_OVER_600),
])
def test_vdt_bands_just_below_on_and_above(vdt: float, category: GrowthCategory) -> None:
    # < 400 d positive (NELSON 2009, verified); 400-600 indeterminate, > 600 negative (Xu 2006, flagged).
    g = assess_growth(100, 200, vdt)  # one doubling: the interval is the VDT
    assert g.vdt_days == pytest.approx(vdt)
    assert g.category is category


def test_growth_result_invariant() -> None:
    with pytest.raises(ValueError, match="vdt_days"):
        GrowthResult(v1_mm3=100, v2_mm3=90, interval_days=30, volume_change_pct=-10, vdt_days=50,
                     category=GrowthCategory.SHRINKING, volume_method=VolumeMethod.MEASURED)


@pytest.mark.parametrize(("data", "method", "v1"), [
    ({"d1_mm": 8, "d2_mm": 10}, VolumeMethod.SPHERE, math.pi / 6 * 512),
    ({"axes1_mm": [10, 8, 6], "axes2_mm": [12, 9, 7]}, VolumeMethod.ELLIPSOID_3_AXES, math.pi / 6 * 480),
    ({"axes1_mm": [10, 8], "axes2_mm": [12, 9]}, VolumeMethod.ELLIPSOID_2_AXES, math.pi / 6 * 640),
    ({"v1_mm3": 250, "v2_mm3": 400}, VolumeMethod.MEASURED, 250),
])
def test_vdt_calculator_input_forms(data: dict[str, Any], method: VolumeMethod, v1: float) -> None:
    result = compute_vdt(VdtInput.model_validate({**data, "interval_days": 120}))
    assert result.outputs is not None
    assert result.outputs.volume_method is method and result.outputs.v1_mm3 == pytest.approx(v1)
    assert result.outputs.nelson_growth and result.outputs.vdt_days is not None
    assert result.model == "vdt" and "van Klaveren" in result.citation


def test_vdt_calculator_reports_shrinkage_as_such() -> None:
    result = compute_vdt(VdtInput(v1_mm3=300, v2_mm3=240, interval_days=180))
    assert result.outputs is not None
    assert result.outputs.vdt_days is None and result.outputs.growth_category is GrowthCategory.SHRINKING
    assert result.outputs.volume_change_pct == pytest.approx(-20)
    assert "shrank 20%" in result.outputs.description


@pytest.mark.parametrize(("data", "field"), [
    ({"interval_days": 90}, "d1_mm"),
    ({"interval_days": 90, "d1_mm": 5}, "d2_mm"),
    ({"interval_days": 90, "d1_mm": 5, "d2_mm": 6, "v1_mm3": 5, "v2_mm3": 6}, "v1_mm3"),
    ({"interval_days": 90, "axes1_mm": [5, 4, 3], "axes2_mm": [5, 4]}, "axes2_mm"),
    ({"interval_days": 90, "axes1_mm": [5], "axes2_mm": [5]}, "axes1_mm"),
    ({"interval_days": 0, "d1_mm": 5, "d2_mm": 6}, "interval_days"),
    ({"interval_days": 90, "d1_mm": -5, "d2_mm": 6}, "d1_mm"),
])
def test_bad_input_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        get_calculator("vdt").run(data)
    assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(v1=st.floats(10, 5000), f1=st.floats(1.26, 5), f2=st.floats(1.26, 5), days=st.floats(30, 1000))
def test_faster_growth_means_shorter_doubling_time(v1: float, f1: float, f2: float, days: float) -> None:
    lo, hi = sorted((f1, f2))
    slow, fast = assess_growth(v1, v1 * lo, days), assess_growth(v1, v1 * hi, days)
    assert slow.vdt_days is not None and fast.vdt_days is not None
    assert fast.vdt_days <= slow.vdt_days
