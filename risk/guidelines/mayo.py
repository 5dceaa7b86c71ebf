"""Mayo Clinic solitary-nodule model (Swensen SJ et al., Arch Intern Med 1997;157:849-855), a secondary
calculator.

Source: shared/reference/clinical-models.md §7::

    x = −6.8272 + 0.0391·age + 0.7917·ever_smoker + 1.3388·extrathoracic cancer diagnosed > 5 years ago
        + 0.1274·diameter_mm + 1.0407·spiculation + 0.7838·upper_lobe
    P = exp(x) / (1 + exp(x))

Intercept −6.8272 is confirmed by two sources (medicalalgorithms.com Swensen page, a public Kotlin
implementation). ER2019 prints −6.872 and oncotoolkit.com −6.8238: transcription errors, not followed.

Scope: 4-30 mm solitary nodules (the development population, on chest radiographs); the model abstains
outside it.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, StrictBool

from risk.guidelines._common import CalculatorInput, logistic
from risk.guidelines.result import ModelResult, ProbabilityOutputs, abstained, scored

INTERCEPT = -6.8272  # medicalalgorithms.com (Swensen) and a Kotlin implementation (ER2019: -6.872; oncotoolkit -6.8238)
AGE_PER_YEAR = 0.0391  # Swensen 1997 via medicalalgorithms.com, Kotlin, ER2019
EVER_SMOKER = 0.7917  # same three sources
EXTRATHORACIC_CANCER_OVER_5Y = 1.3388  # same three sources
DIAMETER_PER_MM = 0.1274  # same three sources
SPICULATION = 1.0407  # same three sources
UPPER_LOBE = 0.7838  # same three sources

ER2019_MISPRINTED_INTERCEPT = -6.872
ONCOTOOLKIT_MISPRINTED_INTERCEPT = -6.8238

DIAMETER_SCOPE_MM = (4.0, 30.0)

MODEL_NAME = "mayo"
MODEL_VERSION = "swensen-1997"
CITATION = ("Swensen SJ, Silverstein MD, Ilstrup DM, Schleck CD, Edell ES. The probability of malignancy in "
            "solitary pulmonary nodules. Arch Intern Med 1997;157:849-855 (intercept -6.8272).")


def mayo_logit(age: float, ever_smoker: bool, extrathoracic_cancer_over_5y: bool, nodule_diameter_mm: float,
               spiculation: bool, upper_lobe: bool) -> float:
    return math.fsum(_terms(age, ever_smoker, extrathoracic_cancer_over_5y, nodule_diameter_mm, spiculation,
                            upper_lobe).values())


def mayo_probability(age: float, ever_smoker: bool, extrathoracic_cancer_over_5y: bool, nodule_diameter_mm: float,
                     spiculation: bool, upper_lobe: bool) -> float:
    """Probability of malignancy (Mayo); no scope check (see :data:`DIAMETER_SCOPE_MM`)."""
    return logistic(mayo_logit(age, ever_smoker, extrathoracic_cancer_over_5y, nodule_diameter_mm, spiculation,
                               upper_lobe))


def _terms(age: float, ever_smoker: bool, extrathoracic_cancer_over_5y: bool, nodule_diameter_mm: float,
           spiculation: bool, upper_lobe: bool) -> dict[str, float]:
    return {
        "intercept": INTERCEPT,
        "age": AGE_PER_YEAR * age,
        "ever_smoker": EVER_SMOKER * ever_smoker,
        "extrathoracic_cancer_over_5y": EXTRATHORACIC_CANCER_OVER_5Y * extrathoracic_cancer_over_5y,
        "nodule_diameter_mm": DIAMETER_PER_MM * nodule_diameter_mm,
        "spiculation": SPICULATION * spiculation,
        "upper_lobe": UPPER_LOBE * upper_lobe,
    }


class MayoInput(CalculatorInput):
    """Inputs of the Mayo Clinic model."""

    age: Annotated[float, Field(ge=18, le=100, description="Age in years.")]
    ever_smoker: StrictBool = Field(description="Current or former smoker.")
    extrathoracic_cancer_over_5y: StrictBool = Field(description=(
        "History of an extrathoracic cancer diagnosed more than 5 years ago."))
    nodule_diameter_mm: Annotated[float, Field(gt=0, le=100, description=(
        "Nodule diameter in mm (scored for 4-30 mm; abstains outside)."))]
    spiculation: StrictBool = Field(description="Spiculated margin.")
    upper_lobe: StrictBool = Field(description="Nodule in an upper lobe.")


MayoResult = ModelResult[ProbabilityOutputs]


def compute_mayo(data: MayoInput) -> MayoResult:
    low, high = DIAMETER_SCOPE_MM
    if not low <= data.nodule_diameter_mm <= high:
        return abstained(MayoResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                         reasons=[f"nodule_diameter_mm {data.nodule_diameter_mm:g} is outside the {low:g}-{high:g} "
                                  "mm range of the Mayo development population"])
    terms = _terms(data.age, data.ever_smoker, data.extrathoracic_cancer_over_5y, data.nodule_diameter_mm,
                   data.spiculation, data.upper_lobe)
    logit = math.fsum(terms.values())
    return scored(MayoResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=ProbabilityOutputs(probability=logistic(logit), linear_predictor=logit,
                                             contributions=terms))
