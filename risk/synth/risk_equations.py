"""The published equations the generator draws from, vectorised with numpy.

The coefficients are imported from the exact scalar implementations in :mod:`risk.guidelines.plcom2012`
(PLCOm2012, Tammemägi NEJM 2013) and :mod:`risk.guidelines.brock` (Brock/PanCan full model 2b, McWilliams
NEJM 2013; shared/reference/clinical-models.md §1-2), so the cohort and the service cannot drift apart;
tests/synth/test_risk_equations.py checks the vectorised forms against the scalar ones.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from risk.domain.patient import RaceEthnicity
from risk.guidelines import brock
from risk.guidelines import plcom2012 as plco

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Race/ethnicity groups in the order the generator indexes them (``race`` arrays hold these indices).
RACE_ORDER: tuple[RaceEthnicity, ...] = (
    RaceEthnicity.WHITE,
    RaceEthnicity.BLACK,
    RaceEthnicity.HISPANIC,
    RaceEthnicity.ASIAN,
    RaceEthnicity.AMERICAN_INDIAN_ALASKA_NATIVE,
    RaceEthnicity.NATIVE_HAWAIIAN_PACIFIC_ISLANDER,
)
_RACE_TERM = np.array([plco.RACE_TERMS[r] for r in RACE_ORDER])

# Nodule composition indices used across the generator.
SOLID, PART_SOLID, NONSOLID = 0, 1, 2


def logistic(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def plcom2012_logit(age: FloatArray, race: IntArray, education_level: IntArray, bmi: FloatArray,
                    copd: BoolArray, personal_history_cancer: BoolArray, family_history_lung_cancer: BoolArray,
                    current_smoker: BoolArray, cigarettes_per_day: FloatArray, smoking_duration_years: FloatArray,
                    years_since_quit: FloatArray) -> FloatArray:
    """PLCOm2012 linear predictor for ever-smokers (``race`` indexes :data:`RACE_ORDER`).

    ``years_since_quit`` is ignored (taken as 0) for current smokers; ``cigarettes_per_day`` must be > 0.
    """
    quit_years = np.where(current_smoker, 0.0, years_since_quit)
    return np.asarray(
        plco.INTERCEPT
        + plco.AGE_PER_YEAR * (age - plco.AGE_CENTRE)
        + _RACE_TERM[race]
        + plco.EDUCATION_PER_LEVEL * (education_level - plco.EDUCATION_CENTRE)
        + plco.BMI_PER_UNIT * (bmi - plco.BMI_CENTRE)
        + plco.COPD * copd
        + plco.PERSONAL_HISTORY_CANCER * personal_history_cancer
        + plco.FAMILY_HISTORY_LUNG_CANCER * family_history_lung_cancer
        + plco.CURRENT_SMOKER * current_smoker
        + plco.INTENSITY * ((cigarettes_per_day / 10.0) ** -1 - plco.INTENSITY_CENTRE)
        + plco.DURATION_PER_YEAR * (smoking_duration_years - plco.DURATION_CENTRE)
        + plco.QUIT_PER_YEAR * (quit_years - plco.QUIT_CENTRE),
        dtype=np.float64,
    )


def brock_nodule_logit(diameter_mm: FloatArray, composition: IntArray, upper_lobe: BoolArray,
                       spiculated: BoolArray) -> FloatArray:
    """The image-only part of the Brock 2b linear predictor (size, type, upper lobe, spiculation)."""
    type_term = np.select([composition == PART_SOLID, composition == NONSOLID], [brock.PART_SOLID, brock.NONSOLID],
                          0.0)
    return np.asarray(
        brock.SIZE * ((diameter_mm / 10.0) ** -0.5 - brock.SIZE_CENTRE)
        + type_term + brock.UPPER_LOBE * upper_lobe + brock.SPICULATION * spiculated,
        dtype=np.float64,
    )
