"""Brock University / PanCan nodule malignancy model, full model 2b with spiculation (McWilliams A, Tammemägi MC
et al., N Engl J Med 2013;369:910-919).

Source: shared/reference/clinical-models.md §1. Equation::

    logit = -6.7892 + 0.0287·(age − 62) + 0.6011·female + 0.2961·family_history_lung_cancer + 0.2953·emphysema
            − 5.3854·((nodule_size_mm / 10)^−0.5 − 1.58113883)
            + {solid: 0; part_solid: +0.377; nonsolid: −0.1276}
            + 0.6581·upper_lobe − 0.0824·(nodule_count − 4) + 0.7729·spiculation
    P = exp(logit) / (1 + exp(logit))

The size term is centred in transformed space at a 4 mm nodule: 1.58113883 = (4/10)^−0.5 = √2.5. The
diameter is *not* reduced by 4 mm before the transform (medicalalgorithms.com's "subtract 4 mm" misreading
gives 4.6 % instead of 18.9 % for a 10 mm nodule). Nodule type is two indicators (+0.377 / −0.1276), not one
ordinal code (a public "parsimonious" module's −0.1466·type_code gives 5.5 % instead of 10.2 %).

Only model 2b ships: the 2a coefficients have a single, suspect secondary source and the parsimonious 1a/1b
coefficients were not found (reference §1.2).

Size is the longest diameter in mm on the baseline scan. Scope: nodules of 1-30 mm (ARCHITECTURE.md; 30 mm
is the upper bound of a "nodule"); outside it the model abstains. Sizes that are not a nodule at all
(<= 0 or > 100 mm) are invalid input.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt

from risk.guidelines._common import CalculatorInput, logistic
from risk.guidelines.result import ModelOutputs, ModelResult, abstained, scored

# ---- Model 2b coefficients (NEJM-Brock; ER2019 Table 2 and two independent implementations agree) ----
INTERCEPT = -6.7892  # two TS implementations; ER2019 prints the uncentred equivalent 0.2761
AGE_PER_YEAR = 0.0287  # ER2019; centred at 62
AGE_CENTRE = 62.0
FEMALE = 0.6011  # ER2019
FAMILY_HISTORY_LUNG_CANCER = 0.2961  # ER2019
EMPHYSEMA = 0.2953  # ER2019 (emphysema seen on CT)
SIZE = -5.3854  # ER2019 footnote: size transform (diameter_mm / 10)^-0.5
SIZE_CENTRE = 1.58113883  # (4 / 10)^-0.5: centred at a 4 mm nodule in transformed space
PART_SOLID = 0.377  # ER2019 (vs solid)
NONSOLID = -0.1276  # ER2019 (ground-glass vs solid)
UPPER_LOBE = 0.6581  # ER2019
NODULE_COUNT_PER_NODULE = -0.0824  # ER2019; centred at 4
NODULE_COUNT_CENTRE = 4
SPICULATION = 0.7729  # ER2019

ER2019_UNCENTRED_INTERCEPT = 0.2761
"""ER2019 Table 2's intercept for the uncentred parametrisation (same predictions; pinned by a test)."""

NODULE_TYPE_TERMS = {"solid": 0.0, "part_solid": PART_SOLID, "nonsolid": NONSOLID}

SIZE_SCOPE_MM = (1.0, 30.0)
"""Diameters the model scores (inclusive); outside it abstains."""

MODEL_NAME = "brock"
MODEL_VERSION = "mcwilliams-nejm-2013-model-2b"
CITATION = ("McWilliams A, Tammemägi MC, Mayo JR, et al. Probability of cancer in pulmonary nodules detected on "
            "first screening CT. N Engl J Med 2013;369:910-919. doi:10.1056/NEJMoa1214726 (full model 2b, with "
            "spiculation); coefficients as tabulated in Eur Radiol 2019;29:5367-5377 Table 2.")

NoduleType = Literal["solid", "part_solid", "nonsolid"]


def brock_logit(age: float, female: bool, family_history_lung_cancer: bool, emphysema: bool,
                nodule_size_mm: float, nodule_type: str, upper_lobe: bool, nodule_count: int,
                spiculation: bool) -> float:
    """The model 2b linear predictor."""
    return math.fsum(_terms(age, female, family_history_lung_cancer, emphysema, nodule_size_mm, nodule_type,
                            upper_lobe, nodule_count, spiculation).values())


def brock_probability(age: float, female: bool, family_history_lung_cancer: bool, emphysema: bool,
                      nodule_size_mm: float, nodule_type: str, upper_lobe: bool, nodule_count: int,
                      spiculation: bool) -> float:
    """Probability that the nodule is cancer (model 2b). The hot-path form of :func:`compute_brock`: no scope
    check (callers check :data:`SIZE_SCOPE_MM`), ``nodule_size_mm`` must be > 0."""
    return logistic(brock_logit(age, female, family_history_lung_cancer, emphysema, nodule_size_mm, nodule_type,
                                upper_lobe, nodule_count, spiculation))


def _terms(age: float, female: bool, family_history_lung_cancer: bool, emphysema: bool, nodule_size_mm: float,
           nodule_type: str, upper_lobe: bool, nodule_count: int, spiculation: bool) -> dict[str, float]:
    if not nodule_size_mm > 0:
        raise ValueError(f'Argument "nodule_size_mm" must be > 0, got {nodule_size_mm!r}.')
    try:
        type_term = NODULE_TYPE_TERMS[nodule_type]
    except KeyError:
        raise ValueError(f'Argument "nodule_type" must be one of {sorted(NODULE_TYPE_TERMS)}, '
                         f'got {nodule_type!r}.') from None
    return {
        "intercept": INTERCEPT,
        "age": AGE_PER_YEAR * (age - AGE_CENTRE),
        "sex": FEMALE * female,
        "family_history_lung_cancer": FAMILY_HISTORY_LUNG_CANCER * family_history_lung_cancer,
        "emphysema": EMPHYSEMA * emphysema,
        "nodule_size_mm": SIZE * ((nodule_size_mm / 10.0) ** -0.5 - SIZE_CENTRE),
        "nodule_type": type_term,
        "upper_lobe": UPPER_LOBE * upper_lobe,
        "nodule_count": NODULE_COUNT_PER_NODULE * (nodule_count - NODULE_COUNT_CENTRE),
        "spiculation": SPICULATION * spiculation,
    }


class BrockInput(CalculatorInput):
    """Inputs of Brock model 2b (field names fixed by the public interface)."""

    age: Annotated[float, Field(ge=18, le=100, description="Age in years.")]
    sex: Literal["female", "male"] = Field(description="female | male.")
    family_history_lung_cancer: StrictBool = Field(description="Lung cancer in a first-degree relative.")
    emphysema: StrictBool = Field(description="Emphysema seen on the CT.")
    nodule_size_mm: Annotated[float, Field(gt=0, le=100, description=(
        "Longest diameter of the nodule in mm on the baseline CT (scored for 1-30 mm; abstains outside)."))]
    nodule_type: NoduleType = Field(description="solid | part_solid | nonsolid (ground-glass).")
    upper_lobe: StrictBool = Field(description="Nodule in an upper lobe (the lingula counts as upper lobe).")
    nodule_count: Annotated[StrictInt, Field(ge=1, le=100, description="Total nodules reported on the scan.")]
    spiculation: StrictBool = Field(description="Spiculated margin.")


class BrockOutputs(ModelOutputs):
    probability: float = Field(ge=0, le=1, description="Probability that the nodule is cancer.")
    linear_predictor: float = Field(description="The logit (log-odds) of probability.")
    contributions: dict[str, float] = Field(description="Each term's contribution to the logit.")


BrockResult = ModelResult[BrockOutputs]


def compute_brock(data: BrockInput) -> BrockResult:
    """Brock model 2b probability, or an abstention outside 1-30 mm."""
    low, high = SIZE_SCOPE_MM
    if not low <= data.nodule_size_mm <= high:
        return abstained(BrockResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                         reasons=[f"nodule_size_mm {data.nodule_size_mm:g} is outside the {low:g}-{high:g} mm "
                                  "range of nodules the Brock model scores"])
    terms = _terms(data.age, data.sex == "female", data.family_history_lung_cancer, data.emphysema,
                   data.nodule_size_mm, data.nodule_type, data.upper_lobe, data.nodule_count, data.spiculation)
    logit = math.fsum(terms.values())
    return scored(BrockResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=BrockOutputs(probability=logistic(logit), linear_predictor=logit, contributions=terms))
