"""VA solitary-nodule model (Gould MK, Ananth L, Barnett PG, Chest 2007;131:383-388), a secondary calculator.

Source: shared/reference/clinical-models.md §7::

    x = −8.404 + 2.061·ever_smoker + 0.779·(age / 10) + 0.112·diameter_mm − 0.567·(years_since_quit / 10)
    P = exp(x) / (1 + exp(x))

The abstract's odds ratios match the slopes (e^2.061 = 7.9, e^0.779 = 2.2 per 10 years, e^0.112 = 1.1 per mm,
e^−0.567 = 0.6 per 10 years). ER2019 prints the quit-time slope as "0.0567" without its minus sign: wrong,
the slope is negative (fewer years of abstinence, higher risk). Worked example (ER2019): a 62-year-old
never-smoker with a 10 mm nodule has x = −2.454, risk 0.079.

``years_since_quit`` is 0 for current smokers and never-smokers. Scope: 7-30 mm solitary nodules (the VA
development cohort as recalled from the Gould 2007 abstract; flagged, not re-read); the model abstains
outside it.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, StrictBool, model_validator

from risk.guidelines._common import CalculatorInput, field_error, logistic
from risk.guidelines.result import ModelResult, ProbabilityOutputs, abstained, scored

INTERCEPT = -8.404  # Gould 2007 via ER2019 Table 2 (worked example reproduces x = -2.454)
EVER_SMOKER = 2.061  # ER2019; abstract OR 7.9
AGE_PER_DECADE = 0.779  # ER2019; abstract OR 2.2 per 10 years
DIAMETER_PER_MM = 0.112  # ER2019; abstract OR 1.1 per mm
QUIT_PER_DECADE = -0.567  # abstract OR 0.6 per 10 years; ER2019 prints "0.0567" without the sign (wrong)

DIAMETER_SCOPE_MM = (7.0, 30.0)

MODEL_NAME = "va"
MODEL_VERSION = "gould-2007"
CITATION = ("Gould MK, Ananth L, Barnett PG. A clinical model to estimate the pretest probability of lung cancer "
            "in patients with solitary pulmonary nodules. Chest 2007;131:383-388 (quit-time slope -0.567).")


def va_logit(age: float, ever_smoker: bool, nodule_diameter_mm: float, years_since_quit: float) -> float:
    return math.fsum(_terms(age, ever_smoker, nodule_diameter_mm, years_since_quit).values())


def va_probability(age: float, ever_smoker: bool, nodule_diameter_mm: float, years_since_quit: float) -> float:
    """Probability of malignancy (VA); no scope check (see :data:`DIAMETER_SCOPE_MM`)."""
    return logistic(va_logit(age, ever_smoker, nodule_diameter_mm, years_since_quit))


def _terms(age: float, ever_smoker: bool, nodule_diameter_mm: float, years_since_quit: float) -> dict[str, float]:
    return {
        "intercept": INTERCEPT,
        "ever_smoker": EVER_SMOKER * ever_smoker,
        "age": AGE_PER_DECADE * (age / 10.0),
        "nodule_diameter_mm": DIAMETER_PER_MM * nodule_diameter_mm,
        "years_since_quit": QUIT_PER_DECADE * (years_since_quit / 10.0),
    }


class VaInput(CalculatorInput):
    """Inputs of the VA model."""

    age: Annotated[float, Field(ge=18, le=100, description="Age in years.")]
    ever_smoker: StrictBool = Field(description="Current or former smoker.")
    nodule_diameter_mm: Annotated[float, Field(gt=0, le=100, description=(
        "Nodule diameter in mm (scored for 7-30 mm; abstains outside)."))]
    years_since_quit: Annotated[float, Field(ge=0, le=100, description=(
        "Years since quitting; 0 for current smokers and never-smokers."))] = 0.0

    @model_validator(mode="after")
    def _quit_needs_smoking(self) -> VaInput:
        if not self.ever_smoker and self.years_since_quit != 0:
            raise field_error("years_since_quit", "must be 0 for a never-smoker")
        if self.years_since_quit > self.age:
            raise field_error("years_since_quit", "must not exceed age")
        return self


VaResult = ModelResult[ProbabilityOutputs]


def compute_va(data: VaInput) -> VaResult:
    low, high = DIAMETER_SCOPE_MM
    if not low <= data.nodule_diameter_mm <= high:
        return abstained(VaResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                         reasons=[f"nodule_diameter_mm {data.nodule_diameter_mm:g} is outside the {low:g}-{high:g} "
                                  "mm range of the VA development cohort"])
    terms = _terms(data.age, data.ever_smoker, data.nodule_diameter_mm, data.years_since_quit)
    logit = math.fsum(terms.values())
    return scored(VaResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=ProbabilityOutputs(probability=logistic(logit), linear_predictor=logit,
                                             contributions=terms))
