"""Evaluation metrics against independent computations and hand-worked values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from fusion_models.calibration import sigmoid
from fusion_models.evaluate import (
    ModelScores,
    auc,
    bootstrap_aucs,
    brier,
    calibration,
    evaluate,
    markdown,
    net_benefit,
    subgroup_table,
)


def test_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(800) < 0.3).astype(float)
    p = np.round(rng.random(800) * 0.5 + 0.3 * y, 1)  # heavy ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert np.isnan(auc(np.zeros(5), np.arange(5.0)))


def test_calibration_of_a_calibrated_model_is_slope_1_intercept_0() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(-2, 1.5, 50000)
    p = sigmoid(z)
    y = (rng.random(z.size) < p).astype(float)
    c = calibration(y, p)
    assert c.slope == pytest.approx(1.0, abs=0.05)
    assert c.intercept == pytest.approx(0.0, abs=0.05)
    over = calibration(y, sigmoid(2 * z))  # overconfident: slope 0.5
    assert over.slope == pytest.approx(0.5, abs=0.05)


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    p = np.array([0.9, 0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    # threshold 0.5: TP = 1, FP = 1 → 1/10 − 1/10 · 0.5/0.5 = 0
    assert net_benefit(y, p, 0.5) == pytest.approx(0.0)
    # threshold 0.15: TP = 2, FP = 1 → 2/10 − 1/10 · 0.15/0.85
    assert net_benefit(y, p, 0.15) == pytest.approx(0.2 - 0.1 * 0.15 / 0.85)


def test_brier() -> None:
    assert brier(np.array([1.0, 0.0]), np.array([0.75, 0.25])) == pytest.approx(0.0625)


def test_bootstrap_interval_contains_the_estimate() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(600) < 0.2).astype(float)
    p = rng.random(600) + 0.4 * y
    intervals, boot, names = bootstrap_aucs(y, {"m": p}, n_boot=200)
    iv = intervals["m"]
    assert iv.low < iv.estimate < iv.high
    assert boot.shape == (200, 1) and names == ["m"]


def test_evaluate_compares_on_common_rows_and_reports_subgroups() -> None:
    rng = np.random.default_rng(3)
    n = 1500
    y = (rng.random(n) < 0.15).astype(float)
    good = sigmoid(-2 + 2.5 * y + rng.normal(0, 1, n))
    weak = sigmoid(-2 + 0.8 * y + rng.normal(0, 1, n))
    partial = np.where(rng.random(n) < 0.7, weak, np.nan)
    mask = np.isfinite(partial)
    frame = pl.DataFrame({"sex": rng.choice(["female", "male"], n), "age_years": rng.uniform(50, 80, n)})
    report = evaluate("patient", y, "fusion", [
        ModelScores("fusion", good), ModelScores("weak", weak),
        ModelScores("partial", np.where(mask, partial, 0.0), mask=mask, description="scored on 70%"),
    ], frame=frame, thresholds=(0.05, 0.1), baselines=["weak", "partial"], n_boot=100)
    by_name = {c["baseline"]: c for c in report.comparisons}
    assert by_name["weak"]["beats_baseline"] and by_name["weak"]["rows"] == n
    assert by_name["partial"]["rows"] == int(mask.sum())
    assert {s["subgroup"] for s in report.subgroups} == {"sex"}
    text = markdown(report, "t", {})
    assert "| weak |" in text and "scored on 70%" in text


def test_subgroup_auc_needs_enough_events() -> None:
    frame = pl.DataFrame({"site": ["a"] * 10 + ["b"] * 10})
    y = np.array([1.0] * 2 + [0.0] * 8 + [1.0] * 5 + [0.0] * 5)
    rows = subgroup_table(frame, y, np.linspace(0, 1, 20))
    assert rows[0]["auc"] is None and rows[1]["auc"] is not None
