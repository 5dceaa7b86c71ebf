"""The vectorised equations the generator draws from equal the service's exact scalar implementations."""

from __future__ import annotations

import numpy as np
import pytest

from risk.guidelines import brock, plcom2012
from risk.synth.model import COMPOSITION_NAMES
from risk.synth.risk_equations import (
    RACE_ORDER,
    brock_nodule_logit,
    logistic,
    plcom2012_logit,
)


def test_plcom2012_matches_the_scalar_guideline_on_random_inputs() -> None:
    rng = np.random.default_rng(3)
    n = 300
    age = rng.uniform(45, 85, n)
    race = rng.integers(0, len(RACE_ORDER), n)
    edu = rng.integers(1, 7, n)
    bmi = rng.uniform(16, 50, n)
    copd, pc, fam, cur = (rng.random((4, n)) < 0.5)
    cpd = rng.uniform(1, 80, n)
    years = rng.uniform(1, 60, n)
    quit_years = rng.uniform(0, 30, n)
    got = logistic(plcom2012_logit(age, race, edu, bmi, copd, pc, fam, cur, cpd, years, quit_years))
    for k in range(n):
        want = plcom2012.plcom2012_probability(
            float(age[k]), RACE_ORDER[race[k]], int(edu[k]), float(bmi[k]), bool(copd[k]), bool(pc[k]),
            bool(fam[k]), bool(cur[k]), float(cpd[k]), float(years[k]), float(quit_years[k]))
        assert got[k] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_plcom2012_all_centred_inputs_give_the_intercept() -> None:
    # White, age 62, education 4, BMI 27, former smoker, (cpd/10)^-1 = 0.4021541613, 27 years, quit 10 years ago.
    cpd = 10.0 / 0.4021541613
    logit = plcom2012_logit(np.array([62.0]), np.array([0]), np.array([4]), np.array([27.0]), np.array([False]),
                            np.array([False]), np.array([False]), np.array([False]), np.array([cpd]),
                            np.array([27.0]), np.array([10.0]))
    assert logit[0] == pytest.approx(-4.532506, abs=1e-12)
    assert logistic(logit)[0] == pytest.approx(0.0106393, abs=1e-7)  # 1 / (1 + e^4.532506)


@pytest.mark.parametrize("composition", [0, 1, 2])
def test_brock_image_terms_match_the_scalar_model(composition: int) -> None:
    sizes = np.array([2.0, 4.0, 6.5, 10.0, 15.0, 29.0])
    for upper in (False, True):
        for spic in (False, True):
            got = brock_nodule_logit(sizes, np.full(6, composition), np.full(6, upper), np.full(6, spic))
            for size, g in zip(sizes, got, strict=True):
                full = brock.brock_logit(62.0, False, False, False, float(size), COMPOSITION_NAMES[composition],
                                         upper, 4, spic)
                assert g == pytest.approx(full - brock.INTERCEPT, abs=1e-12)
