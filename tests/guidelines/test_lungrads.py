"""ACR Lung-RADS v2022 (shared/reference/clinical-models.md §3): every row, at and around each threshold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from risk.errors import InvalidInput
from risk.guidelines.lungrads import compute_lungrads, grew
from risk.guidelines.lungrads_inputs import LungRadsInput, ParenchymalNodule
from risk.guidelines.registry import get_calculator


def run(*findings: dict[str, Any], **flags: Any) -> Any:
    return compute_lungrads(LungRadsInput.model_validate({"findings": list(findings), **flags}))


def category(*findings: dict[str, Any], **flags: Any) -> str:
    result = run(*findings, **flags)
    assert result.outputs is not None, result.abstentions
    return str(result.outputs.category_with_modifier)


def nod(status: str, composition: str, mean: float, solid: float | None = None, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"finding": "nodule", "status": status, "composition": composition, "mean_diameter_mm": mean}
    if solid is not None:
        d["solid_component"] = {"mean_diameter_mm": solid}
    d.update(kw)
    return d


def prior(days: float, mean: float, solid: float | None = None, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"interval_days": days, "mean_diameter_mm": mean}
    if solid is not None:
        d["solid_component"] = {"mean_diameter_mm": solid}
    d.update(kw)
    return d


# ---- mean diameter: decimal arithmetic, half up, one decimal ----

def test_l05_mean_of_axes_rounds_half_up_in_decimal() -> None:
    # Reference vector L05: axes 6.2 and 5.7 → 5.95 → reported 6.0 → baseline solid category 3.
    f = {"status": "baseline", "composition": "solid", "long_axis_mm": 6.2, "short_axis_mm": 5.7}
    assert ParenchymalNodule.model_validate(f).mean_mm == Decimal("6.0")
    assert category(f) == "3"
    assert run(f).outputs.findings[0].mean_diameter_mm == 6.0
    # The same tie from 6.1 and 5.8: binary floats store 11.9 / 2 as 5.9499999..., so float rounding gives 5.9
    # (category 2); decimal arithmetic gives 6.0 like L05.
    g = {**f, "long_axis_mm": 6.1, "short_axis_mm": 5.8}
    assert round((6.1 + 5.8) / 2, 1) == 5.9
    assert category(g) == "3"


@pytest.mark.parametrize(("given", "mean"), [
    ({"mean_diameter_mm": 5.95}, "6.0"), ({"mean_diameter_mm": 5.94}, "5.9"), ({"mean_diameter_mm": 5.949}, "5.9"),
    ({"long_axis_mm": 6.25, "short_axis_mm": 5.65}, "6.0"),  # axes to one decimal first: 6.3 and 5.7
    ({"long_axis_mm": 6.1, "short_axis_mm": 5.8}, "6.0"), ({"long_axis_mm": 6.1, "short_axis_mm": 5.7}, "5.9"),
])
def test_mean_diameter_rounding(given: dict[str, float], mean: str) -> None:
    n = ParenchymalNodule.model_validate({"status": "baseline", "composition": "solid", **given})
    assert n.mean_mm == Decimal(mean)


# ---- solid ----

@pytest.mark.parametrize(("mean", "cat"), [
    (5.9, "2"), (6.0, "3"), (6.1, "3"), (7.9, "3"), (8.0, "4A"), (8.1, "4A"), (14.9, "4A"), (15.0, "4B"),
    (15.1, "4B"),
])
def test_solid_baseline(mean: float, cat: str) -> None:
    assert category(nod("baseline", "solid", mean)) == cat


@pytest.mark.parametrize(("mean", "cat"), [
    (3.9, "2"), (4.0, "3"), (4.1, "3"), (5.9, "3"), (6.0, "4A"), (6.1, "4A"), (7.9, "4A"), (8.0, "4B"), (8.1, "4B"),
])
def test_solid_new(mean: float, cat: str) -> None:
    assert category(nod("new", "solid", mean)) == cat


@pytest.mark.parametrize(("before", "now", "cat"), [
    (2.0, 3.6, "4A"),  # growing < 8 mm (+1.6)
    (6.3, 7.9, "4A"), (6.4, 8.0, "4B"), (6.5, 8.1, "4B"),  # growing, at the 8 mm boundary
    (10.0, 12.0, "4B"),
])
def test_solid_growing(before: float, now: float, cat: str) -> None:
    assert category(nod("existing", "solid", now, priors=[prior(180, before)], prior_category="2")) == cat


@pytest.mark.parametrize(("now", "growth"), [(7.4, False), (7.5, False), (7.6, True)])
def test_growth_is_more_than_1_5_mm(now: float, growth: bool) -> None:
    # v2022: growth is an increase in mean diameter of > 1.5 mm; exactly 1.5 mm is not growth.
    result = run(nod("existing", "solid", now, priors=[prior(300, 6.0)], prior_category="2"))
    finding = result.outputs.findings[0]
    assert (finding.change == "growing") is growth
    assert result.outputs.category.value == ("4A" if growth else "2")


@pytest.mark.parametrize(("days", "now", "growth"), [
    (365, 7.5, False), (365, 7.6, True),
    (366, 7.5, False), (366, 7.6, True),  # 1.6 × 365/366 = 1.596 > 1.5
    (400, 7.6, False), (400, 7.7, True),  # 1.6 × 365/400 = 1.46; 1.7 × 365/400 = 1.55
    (730, 9.0, False), (730, 9.1, True),  # 3.0 × 0.5 = 1.5 (not > 1.5); 3.1 × 0.5 = 1.55
])
def test_growth_window_12_months_and_pro_rating(days: float, now: float, growth: bool) -> None:
    # Our reading of "within a 12-month interval": compare priors within 365 days; with none that recent,
    # pro-rate the increase since the most recent prior to 12 months (increase × 365 / days > 1.5).
    assert grew(Decimal(str(now)), [(days, Decimal("6.0"))]) is growth


def test_growth_uses_any_prior_within_12_months() -> None:
    assert grew(Decimal("8.0"), [(90, Decimal("7.9")), (300, Decimal("6.4"))])
    assert not grew(Decimal("8.0"), [(90, Decimal("7.9")), (400, Decimal("6.4"))])  # pro-rating only when none


def test_l16_slow_growth_over_multiple_exams_is_4b() -> None:
    # Reference vector L16: grows over several exams, never by > 1.5 mm within 12 months → 4B.
    f = nod("existing", "solid", 7.0, priors=[prior(365, 6.0), prior(730, 5.0)], prior_category="2")
    result = run(f)
    assert result.outputs.category.value == "4B"
    assert result.outputs.findings[0].change == "slow_growth"
    # one prior only, or total growth of exactly 1.5 mm: not slow growth
    assert category(nod("existing", "solid", 6.5, priors=[prior(365, 6.0), prior(730, 5.0)],
                        prior_category="2")) == "2"
    assert category(nod("existing", "solid", 6.5, priors=[prior(365, 5.9), prior(730, 5.0)],
                        prior_category="2")) == "3"  # not slow growth, but crossed 6 mm: reclassified by size
    assert category(nod("existing", "solid", 5.5, priors=[prior(365, 5.0), prior(730, 4.0)],
                        prior_category="2")) == "2"


def test_l15_crossing_a_size_threshold_without_growth_reclassifies_by_size() -> None:
    # Reference vector L15 / v2022 note: size thresholds apply when a nodule enlarges into a higher size category
    # even if it does not meet the growth definition.
    assert category(nod("existing", "solid", 6.4, priors=[prior(365, 5.6)], prior_category="2")) == "3"
    assert category(nod("existing", "solid", 8.2, priors=[prior(365, 7.0)], prior_category="2")) == "4A"
    assert category(nod("existing", "solid", 5.9, priors=[prior(365, 5.0)], prior_category="2")) == "2"


@pytest.mark.parametrize(("prior_cat", "cat"), [("2", "2"), ("3", "2"), ("4A", "3"), ("4B", "4B"), ("4X", "4X")])
def test_stepped_management_for_stable_nodules(prior_cat: str, cat: str) -> None:
    # v2022: 3 stable or decreased at 6 months → 2; 4A stable or decreased at 3 months → 3.
    result = run(nod("existing", "solid", 9.0, priors=[prior(90, 9.2)], prior_category=prior_cat))
    assert result.outputs.category.value == cat
    assert result.outputs.findings[0].change == "stable_or_decreased"


def test_stable_nodule_without_prior_category_is_inferred_with_a_warning() -> None:
    result = run(nod("existing", "solid", 10.0, priors=[prior(90, 10.0)]))
    assert result.outputs.category.value == "3"  # prior size says 4A, stable → 3
    assert any("prior_category not given" in w for w in result.warnings)


def test_4b_proven_benign_is_2() -> None:
    f = nod("existing", "solid", 16.0, priors=[prior(60, 16.0)], prior_category="4B", proven_benign=True)
    assert category(f) == "2"


# ---- part-solid ----

@pytest.mark.parametrize(("total", "solid", "cat"), [
    (5.9, 3.0, "2"), (6.0, 5.9, "3"), (6.1, 3.0, "3"), (9.0, 6.0, "4A"), (9.0, 6.1, "4A"), (9.0, 7.9, "4A"),
    (9.0, 8.0, "4B"), (12.0, 8.1, "4B"),
])
def test_part_solid_baseline(total: float, solid: float, cat: str) -> None:
    assert category(nod("baseline", "part_solid", total, solid)) == cat


@pytest.mark.parametrize(("total", "solid", "cat"), [
    (5.9, 2.0, "3"), (5.9, 4.5, "3"), (6.0, 3.9, "4A"), (6.0, 4.0, "4B"), (9.0, 4.1, "4B"),
])
def test_part_solid_new(total: float, solid: float, cat: str) -> None:
    # Documented reading: a new part-solid nodule < 6 mm total is 3 whatever its solid component.
    assert category(nod("new", "part_solid", total, solid)) == cat


@pytest.mark.parametrize(("before_solid", "solid", "cat"), [(2.0, 3.9, "4A"), (2.4, 4.0, "4B"), (3.0, 6.0, "4B")])
def test_part_solid_growing_solid_component(before_solid: float, solid: float, cat: str) -> None:
    f = nod("existing", "part_solid", 10.0, solid, priors=[prior(180, 10.0, before_solid)], prior_category="3")
    result = run(f)
    assert result.outputs.category.value == cat and result.outputs.findings[0].change == "growing"


@pytest.mark.parametrize(("solid", "cat"), [(3.9, "4A"), (4.0, "4B")])
def test_non_solid_nodule_developing_a_solid_component(solid: float, cat: str) -> None:
    f = nod("existing", "part_solid", 12.0, solid, priors=[prior(365, 12.0, composition="nonsolid")],
            prior_category="2")
    result = run(f)
    assert result.outputs.category.value == cat and result.outputs.findings[0].change == "new_solid_component"


def test_part_solid_slow_growth_is_4b() -> None:
    f = nod("existing", "part_solid", 10.0, 3.0, priors=[prior(365, 9.0, 3.0), prior(730, 8.0, 3.0)],
            prior_category="3")
    assert category(f) == "4B"


# ---- non-solid ----

@pytest.mark.parametrize(("status", "mean", "cat"), [
    ("baseline", 29.9, "2"), ("baseline", 30.0, "3"), ("baseline", 30.1, "3"),
    ("new", 29.9, "2"), ("new", 30.0, "3"),
])
def test_nonsolid_baseline_and_new(status: str, mean: float, cat: str) -> None:
    assert category(nod(status, "nonsolid", mean)) == cat


def test_nonsolid_growing_or_stable() -> None:
    assert category(nod("existing", "nonsolid", 22.0, priors=[prior(300, 20.0)], prior_category="2")) == "2"
    # >= 30 mm stable or slowly growing → 2
    assert category(nod("existing", "nonsolid", 31.0, priors=[prior(365, 30.5)], prior_category="3")) == "2"
    assert category(nod("existing", "nonsolid", 33.0, priors=[prior(365, 32.0), prior(730, 31.0)],
                        prior_category="2")) == "2"
    # growing >= 30 mm: not a row of the table; 3 by the size threshold, with a warning
    result = run(nod("existing", "nonsolid", 33.0, priors=[prior(300, 31.0)], prior_category="2"))
    assert result.outputs.category.value == "3" and result.warnings


# ---- juxtapleural ----

@pytest.mark.parametrize(("kw", "cat"), [
    ({"mean": 9.9}, "2"), ({"mean": 10.0}, "4A"), ({"mean": 10.1}, "4A"),
    ({"mean": 9.0, "smooth_margins": False}, "4A"), ({"mean": 9.0, "shape": "other"}, "4A"),
    ({"mean": 9.0, "shape": "lentiform"}, "2"), ({"mean": 9.0, "shape": "triangular"}, "2"),
    ({"mean": 7.0, "status": "new"}, "2"), ({"mean": 7.0, "juxtapleural": False}, "3"),
])
def test_juxtapleural_rule(kw: dict[str, Any], cat: str) -> None:
    status = kw.pop("status", "baseline")
    mean = kw.pop("mean")
    f = nod(status, "solid", mean, **{"juxtapleural": True, "smooth_margins": True, "shape": "oval", **kw})
    assert category(f) == cat


# ---- benign features, 4X, airway, cysts ----

@pytest.mark.parametrize("feature", ["complete_calcification", "central_calcification", "popcorn_calcification",
                                     "concentric_ring_calcification", "fat"])
def test_benign_calcification_or_fat_is_1(feature: str) -> None:
    assert category(nod("baseline", "solid", 12.0, benign_feature=feature)) == "1"


@pytest.mark.parametrize(("mean", "cat"), [(5.0, "2"), (7.0, "4X"), (10.0, "4X"), (16.0, "4X")])
def test_additional_suspicious_features_make_3_and_4_into_4x(mean: float, cat: str) -> None:
    result = run(nod("baseline", "solid", mean, additional_suspicious_features=True))
    assert result.outputs.category.value == cat
    if cat == "4X":
        assert result.outputs.follow_up_interval_months is None and "Referral" in result.outputs.management


@pytest.mark.parametrize(("level", "status", "change", "cat"), [
    ("subsegmental", "baseline", None, "2"), ("subsegmental", "new", None, "2"),
    ("subsegmental", "existing", "stable", "2"), ("subsegmental", "existing", "decreased", "2"),
    ("segmental_or_proximal", "baseline", None, "4A"), ("segmental_or_proximal", "new", None, "4A"),
    ("segmental_or_proximal", "existing", "stable", "4B"), ("segmental_or_proximal", "existing", "growing", "4B"),
])
def test_airway_nodules(level: str, status: str, change: str | None, cat: str) -> None:
    f: dict[str, Any] = {"finding": "airway_nodule", "level": level, "status": status}
    if change:
        f["change"] = change
    if status == "existing":
        f["prior_category"] = "4A" if level != "subsegmental" else "2"
    result = run(f)
    assert result.outputs.category.value == cat
    if cat == "4B":
        assert "bronchoscopy" in result.outputs.management


@pytest.mark.parametrize(("level", "change"), [("subsegmental", "growing"), ("segmental_or_proximal", "decreased")])
def test_airway_changes_not_in_the_table_abstain(level: str, change: str) -> None:
    result = run({"finding": "airway_nodule", "level": level, "status": "existing", "change": change})
    assert result.outputs is None and "not covered" in result.abstentions[0]


@pytest.mark.parametrize(("cyst", "cat"), [
    ({"status": "baseline", "wall": "thick"}, "4A"),
    ({"status": "baseline", "wall": "thin", "multilocular": True}, "4A"),
    ({"status": "new", "wall": "thick"}, "4A"),
    ({"status": "baseline", "wall": "thin"}, "1"),  # thin-walled unilocular: benign, not categorised
    ({"status": "existing", "wall": "thick", "growing_cystic_component": True}, "3"),
    ({"status": "existing", "wall": "thin", "multilocular": True, "became_multilocular": True}, "4A"),
    ({"status": "existing", "wall": "thick", "multilocular": True, "became_multilocular": True}, "4A"),
    ({"status": "existing", "wall": "thick", "growing_wall_thickness_or_nodularity": True}, "4B"),
    ({"status": "existing", "wall": "thin", "multilocular": True, "growing_cystic_component": True}, "4B"),
    ({"status": "existing", "wall": "thin", "multilocular": True, "increased_loculation": True}, "4B"),
    ({"status": "existing", "wall": "thin", "multilocular": True, "new_or_increased_opacity": True}, "4B"),
    ({"status": "existing", "wall": "thick", "prior_category": "4A"}, "3"),
    ({"status": "existing", "wall": "thick", "prior_category": "3"}, "2"),
])
def test_atypical_cysts(cyst: dict[str, Any], cat: str) -> None:
    assert category({"finding": "atypical_cyst", **cyst}) == cat


# ---- category 0, S, exam level, management ----

@pytest.mark.parametrize(("flag", "follow_up"), [("prior_ct_being_located", None),
                                                 ("lungs_not_fully_evaluable", None),
                                                 ("infectious_or_inflammatory_findings", (1, 3))])
def test_category_0(flag: str, follow_up: tuple[int, int] | None) -> None:
    result = run(nod("baseline", "solid", 9.0), **{flag: True})
    out = result.outputs
    assert out.category.value == "0" and out.incomplete_reasons and out.follow_up_interval_months == follow_up
    assert out.findings[0].category.value == "4A"  # still assessed, for the record
    assert out.governing_finding_index is None and out.malignancy_probability is None


def test_s_modifier() -> None:
    assert category(nod("baseline", "solid", 4.0), significant_other_findings=True) == "2S"
    assert category(prior_ct_being_located=True, significant_other_findings=True) == "0S"


def test_no_findings_is_1() -> None:
    out = run().outputs
    assert out.category.value == "1" and out.follow_up_interval_months == (12, 12) and out.descriptor == "Negative"


def test_exam_category_is_the_most_suspicious_finding() -> None:
    out = run(nod("baseline", "solid", 4.0), nod("baseline", "solid", 9.0), nod("baseline", "solid", 7.0)).outputs
    assert out.category.value == "4A" and out.governing_finding_index == 1
    assert [f.category.value for f in out.findings] == ["2", "4A", "3"]


@pytest.mark.parametrize(("mean", "cat", "months", "probability"), [
    (4.0, "2", (12, 12), "< 1%"), (7.0, "3", (6, 6), "1-2%"), (9.0, "4A", (3, 3), "5-15%"), (16.0, "4B", None, "> 15%"),
])
def test_management_interval_and_probability(mean: float, cat: str, months: tuple[int, int] | None,
                                             probability: str) -> None:
    out = run(nod("baseline", "solid", mean)).outputs
    assert out.category.value == cat and out.follow_up_interval_months == months
    assert out.malignancy_probability == probability and out.management


def test_result_envelope() -> None:
    result = run(nod("baseline", "solid", 4.0))
    assert result.model == "lungrads" and result.version == "v2022" and "CHEST 2024" in result.citation
    assert result.inputs["findings"][0]["mean_diameter_mm"] == 4.0


# ---- bad input ----

@pytest.mark.parametrize(("findings", "field"), [
    ([nod("baseline", "part_solid", 8.0)], "findings[0].solid_component"),
    ([nod("existing", "solid", 8.0)], "findings[0].priors"),
    ([nod("baseline", "solid", 8.0), nod("new", "solid", 5.0)], "findings[1].status"),
    ([{"status": "baseline", "composition": "solid", "long_axis_mm": 5.0, "short_axis_mm": 6.0}],
     "findings[0].short_axis_mm"),
    ([{"status": "baseline", "composition": "solid"}], "findings[0].long_axis_mm"),
    ([nod("baseline", "solid", -1)], "findings[0].mean_diameter_mm"),
    ([nod("baseline", "glass", 5.0)], "findings[0].composition"),
    ([nod("existing", "solid", 8.0, priors=[{"interval_days": 30}])], "findings[0].priors[0].long_axis_mm"),
    ([nod("baseline", "part_solid", 8.0, 9.0)], "findings[0].solid_component"),
    ([{"finding": "airway_nodule", "status": "existing", "level": "subsegmental"}], "findings[0].change"),
    ([{"finding": "atypical_cyst", "status": "baseline", "wall": "thin", "became_multilocular": True}],
     "findings[0].became_multilocular"),
    ([{"finding": "mass", "status": "baseline"}], "findings[0]"),
])
def test_bad_input_names_the_field(findings: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        get_calculator("lungrads").run({"findings": findings})
    assert info.value.field == field
