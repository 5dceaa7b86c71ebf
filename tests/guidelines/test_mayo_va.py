"""Mayo Clinic and VA nodule models (shared/reference/clinical-models.md §7)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from risk.errors import InvalidInput
from risk.guidelines import mayo, va
from risk.guidelines.mayo import MayoInput, compute_mayo, mayo_logit
from risk.guidelines.registry import get_calculator
from risk.guidelines.va import VaInput, compute_va, va_logit, va_probability


def mayo_base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(age=65, ever_smoker=True, extrathoracic_cancer_over_5y=False, nodule_diameter_mm=12,
                                spiculation=True, upper_lobe=True)
    data.update(overrides)
    return data


# ---- Mayo ----

def test_mayo_by_hand() -> None:
    # No published worked example with inputs and output was found; computed by hand from the equation.
    result = compute_mayo(MayoInput.model_validate(mayo_base()))
    x = -6.8272 + 0.0391 * 65 + 0.7917 + 0.1274 * 12 + 1.0407 + 0.7838
    assert result.outputs is not None
    assert result.outputs.linear_predictor == pytest.approx(x, abs=1e-12)
    assert result.outputs.probability == pytest.approx(math.exp(x) / (1 + math.exp(x)), rel=1e-12)
    assert result.model == "mayo" and "Arch Intern Med 1997" in result.citation


def test_mayo_intercept_is_not_a_misprint() -> None:
    # Followed: -6.8272 (medicalalgorithms.com Swensen page and a public Kotlin implementation agree).
    # ER2019 prints -6.872 and oncotoolkit.com -6.8238: transcription errors.
    assert mayo.INTERCEPT == -6.8272
    x = mayo_logit(60, False, False, 10, False, False)
    assert x == pytest.approx(-6.8272 + 0.0391 * 60 + 0.1274 * 10, abs=1e-12)
    p = mayo.mayo_probability(60, False, False, 10, False, False)
    for misprint in (mayo.ER2019_MISPRINTED_INTERCEPT, mayo.ONCOTOOLKIT_MISPRINTED_INTERCEPT):
        assert round(mayo.logistic(x - mayo.INTERCEPT + misprint), 5) != round(p, 5)


@pytest.mark.parametrize(("d", "scored"), [(3.9, False), (4.0, True), (4.1, True), (29.9, True), (30.0, True),
                                           (30.1, False)])
def test_mayo_scope_4_to_30_mm(d: float, scored: bool) -> None:
    result = compute_mayo(MayoInput.model_validate(mayo_base(nodule_diameter_mm=d)))
    assert (result.outputs is not None) is scored
    assert scored or "4-30 mm" in result.abstentions[0]


# ---- VA ----

def test_va_er2019_worked_example() -> None:
    # ER2019 Table 2: a 62-year-old never-smoker with a 10 mm nodule: x = -2.454, risk 0.079.
    assert va_logit(62, False, 10, 0) == pytest.approx(-2.454, abs=5e-4)
    assert round(va_probability(62, False, 10, 0), 3) == 0.079
    result = compute_va(VaInput(age=62, ever_smoker=False, nodule_diameter_mm=10))
    assert result.outputs is not None and round(result.outputs.probability, 3) == 0.079


def test_va_quit_slope_is_negative() -> None:
    # Followed: Gould 2007 abstract, OR 0.6 per 10 years since quitting (e^-0.567 = 0.57). ER2019 prints the
    # slope as "0.0567" without its sign: with it, risk would rise with years of abstinence.
    assert va.QUIT_PER_DECADE == -0.567
    assert round(math.exp(va.QUIT_PER_DECADE), 1) == 0.6
    assert va_probability(65, True, 15, 20) < va_probability(65, True, 15, 5) < va_probability(65, True, 15, 0)
    x = va_logit(65, True, 15, 20)
    assert x == pytest.approx(-8.404 + 2.061 + 0.779 * 6.5 + 0.112 * 15 - 0.567 * 2.0, abs=1e-12)


def test_va_odds_ratios_match_the_abstract() -> None:
    assert round(math.exp(va.EVER_SMOKER), 1) == 7.9
    assert round(math.exp(va.AGE_PER_DECADE), 1) == 2.2
    assert round(math.exp(va.DIAMETER_PER_MM), 1) == 1.1


@pytest.mark.parametrize(("d", "scored"), [(6.9, False), (7.0, True), (30.0, True), (30.1, False)])
def test_va_scope_7_to_30_mm(d: float, scored: bool) -> None:
    result = compute_va(VaInput(age=62, ever_smoker=True, nodule_diameter_mm=d))
    assert (result.outputs is not None) is scored


@pytest.mark.parametrize(("data", "field"), [
    ({"age": 62, "ever_smoker": False, "nodule_diameter_mm": 10, "years_since_quit": 5}, "years_since_quit"),
    ({"age": 62, "ever_smoker": True, "nodule_diameter_mm": -1}, "nodule_diameter_mm"),
    ({"age": 62, "nodule_diameter_mm": 10}, "ever_smoker"),
])
def test_va_bad_input_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        get_calculator("va").run(data)
    assert info.value.field == field
