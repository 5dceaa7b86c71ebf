"""Calibrators: Platt recovers a known map, isotonic matches scikit-learn, JSON round trips, intervals bracket."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from fusion_models.calibration import (
    P_MIN,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_json,
    fit_calibrator,
    sigmoid,
)


def _data(n: int = 20000, a: float = 0.6, b: float = -1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < sigmoid(a * z + b)).astype(float)
    return z, y


def test_platt_recovers_the_generating_map() -> None:
    z, y = _data()
    cal = PlattCalibrator.fit(z, y)
    assert cal.a == pytest.approx(0.6, abs=0.05)
    assert cal.b == pytest.approx(-1.0, abs=0.05)


def test_isotonic_matches_scikit_learn() -> None:
    z, y = _data(3000, seed=1)
    ours = IsotonicCalibrator.fit(z, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(z, y)
    grid = np.linspace(z.min() - 1, z.max() + 1, 500)
    np.testing.assert_allclose(ours.predict(grid), np.clip(ref.predict(grid), P_MIN, 1 - P_MIN), atol=1e-12)
    assert np.all(np.diff(ours.predict(np.sort(z))) >= 0)


@pytest.mark.parametrize("kind", ["platt", "isotonic", "identity"])
def test_json_round_trip_is_exact(kind: str) -> None:
    z, y = _data(2000, seed=2)
    cal = fit_calibrator(kind, z, y, fitted_on="test")
    again = calibrator_from_json(json.loads(json.dumps(cal.to_json())))
    np.testing.assert_array_equal(again.predict(z), cal.predict(z))
    assert again.id == cal.id


@pytest.mark.parametrize("kind", ["platt", "isotonic"])
def test_interval_brackets_the_probability(kind: str) -> None:
    z, y = _data(2000, seed=3)
    cal = fit_calibrator(kind, z, y)
    for v in (-4.0, -1.0, 0.0, 2.5):
        p = float(cal.predict(np.array([v]))[0])
        lo, hi = cal.interval(v)  # type: ignore[misc]
        assert 0 <= lo <= hi <= 1
        if kind == "platt":
            assert lo <= p <= hi


def test_probabilities_never_reach_0_or_1() -> None:
    z = np.array([-5.0, -4.0, 4.0, 5.0] * 10)
    y = np.array([0, 0, 1, 1] * 10, dtype=float)
    p = IsotonicCalibrator.fit(z, y).predict(np.array([-10.0, 10.0]))
    assert p[0] == P_MIN and p[1] == 1 - P_MIN


def test_fit_needs_both_outcomes_and_finite_scores() -> None:
    with pytest.raises(ValueError, match="both outcomes"):
        PlattCalibrator.fit(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        IsotonicCalibrator.fit(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
