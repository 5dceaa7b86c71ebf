"""Selecting the final model of a task on validation data only: XGBoost, the network, or a blend of the two.

The candidates are log-odds blends ``z = w · z_xgb + (1 − w) · z_net`` for ``w`` in ``WEIGHT_GRID`` (w = 1 is
XGBoost alone, w = 0 the network alone). Each candidate is Platt-rescaled on the validation set and scored
by its validation log-loss; the lowest wins, ties going to the larger ``w`` (XGBoost alone does not need torch
at run time: performance.md §6, ~1.1 s and ~175 MiB per worker). The test split is never looked at.

Choosing one weight out of five on the validation set is a one-parameter fit; the calibrator is fitted on the
same validation rows afterwards (a Platt or isotonic map of one score), so the held-out test metrics in the
report are honest estimates for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fusion_models.calibration import PlattCalibrator

FloatArray = npt.NDArray[np.float64]

WEIGHT_GRID = (1.0, 0.75, 0.5, 0.25, 0.0)


@dataclass(frozen=True, slots=True)
class Blend:
    xgb_weight: float
    validation_logloss: dict[str, float]

    def __post_init__(self) -> None:
        if not 0.0 <= self.xgb_weight <= 1.0:
            raise ValueError('Argument "xgb_weight" must lie in [0, 1].')

    @property
    def torch_weight(self) -> float:
        return 1.0 - self.xgb_weight

    @property
    def uses_torch(self) -> bool:
        return self.torch_weight > 0.0

    @property
    def uses_xgb(self) -> bool:
        return self.xgb_weight > 0.0

    def combine(self, z_xgb: FloatArray | None, z_net: FloatArray | None) -> FloatArray:
        total: FloatArray | None = None
        if self.uses_xgb:
            assert z_xgb is not None
            total = self.xgb_weight * z_xgb
        if self.uses_torch:
            assert z_net is not None
            part = self.torch_weight * z_net
            total = part if total is None else total + part
        assert total is not None
        return total

    def to_json(self) -> dict[str, Any]:
        return {"xgb_weight": self.xgb_weight, "torch_weight": self.torch_weight,
                "validation_logloss_by_xgb_weight": self.validation_logloss}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Blend:
        return cls(xgb_weight=float(data["xgb_weight"]),
                   validation_logloss={str(k): float(v) for k, v in data["validation_logloss_by_xgb_weight"].items()})


def logloss(p: FloatArray, y: FloatArray) -> float:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def select_blend(z_xgb: FloatArray, z_net: FloatArray, y: FloatArray) -> Blend:
    losses: dict[str, float] = {}
    best_w, best = 1.0, float("inf")
    for w in WEIGHT_GRID:
        z = w * z_xgb + (1 - w) * z_net
        loss = logloss(PlattCalibrator.fit(z, y).predict(z), y)
        losses[f"{w:g}"] = loss
        if loss < best - 1e-6:
            best_w, best = w, loss
    return Blend(xgb_weight=best_w, validation_logloss=losses)
