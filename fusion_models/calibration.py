"""Calibrators that map a model's log-odds score to a probability, stored as plain JSON.

As in Sybil's calibrator (sybil/models/calibrator.py), the fitted calibrator is a few numbers in JSON, not a
pickled scikit-learn object, so it loads under any library version. Both kinds take the model's raw score on
the log-odds scale (``z``) and return a probability.

* **Platt** (Platt 1999): ``p = sigmoid(a·z + b)``, fitted by maximum likelihood (Newton-Raphson). The
  interval is the 95% Wald interval of the linear predictor from the fit's covariance (delta method).
* **Isotonic**: pool-adjacent-violators on (z, y), stored as block boundaries and block event rates with the
  block sizes; prediction interpolates linearly between block ends (scikit-learn's IsotonicRegression does the
  same) and is clipped to [``P_MIN``, 1 − ``P_MIN``] so no patient is told 0% or 100%. The interval is the 95%
  Wilson interval of the block the score falls in.

Either way the interval reflects calibration-sample uncertainty only, not the model's own uncertainty; the
model card says so.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

P_MIN = 1e-4
Z95 = 1.959963984540054
CALIBRATOR_FORMAT = 1


class CalibratorKind(StrEnum):
    PLATT = "platt"
    ISOTONIC = "isotonic"
    IDENTITY = "identity"


class Calibrator(Protocol):
    @property
    def kind(self) -> CalibratorKind: ...

    def predict(self, z: FloatArray) -> FloatArray: ...

    def interval(self, z: float) -> tuple[float, float] | None: ...

    def to_json(self) -> dict[str, Any]: ...

    @property
    def id(self) -> str: ...


def sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))), dtype=np.float64)


def logit(p: FloatArray, eps: float = 1e-7) -> FloatArray:
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


def _id(data: Mapping[str, Any]) -> str:
    blob = json.dumps({k: v for k, v in data.items() if k not in ("id", "fitted_on")}, sort_keys=True).encode()
    return f"{data['kind']}-{hashlib.sha256(blob).hexdigest()[:12]}"


def fit_logistic(x: FloatArray, y: FloatArray, offset: FloatArray | None = None, *, slope: bool = True,
                 max_iter: int = 100) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood logistic regression of y on [1, x] (or [1] with ``slope=False``) with an offset.

    Returns (coefficients, covariance). Newton-Raphson with step halving; a tiny ridge keeps separable data
    finite. Used by Platt scaling and by the calibration slope/intercept in evaluate.py.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    off = np.zeros_like(x) if offset is None else np.asarray(offset, dtype=np.float64)
    design = np.column_stack([np.ones_like(x), x]) if slope else np.ones((x.size, 1))
    beta = np.zeros(design.shape[1])
    ridge = 1e-8 * np.eye(design.shape[1])

    def nll(b: FloatArray) -> float:
        eta = design @ b + off
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta))

    current = nll(beta)
    for _ in range(max_iter):
        eta = design @ beta + off
        p = sigmoid(eta)
        w = p * (1 - p)
        grad = design.T @ (p - y)
        hess = design.T @ (design * w[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-6:
            candidate = beta - t * step
            value = nll(candidate)
            if value <= current + 1e-12:
                break
            t /= 2
        beta, previous, current = candidate, current, value
        if abs(previous - current) < 1e-10 * max(1.0, abs(current)):
            break
    eta = design @ beta + off
    p = sigmoid(eta)
    hess = design.T @ (design * (p * (1 - p))[:, None]) + ridge
    return np.asarray(beta, dtype=np.float64), np.asarray(np.linalg.inv(hess), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PlattCalibrator:
    a: float
    b: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    fitted_on: str = ""
    kind: CalibratorKind = CalibratorKind.PLATT

    @classmethod
    def fit(cls, z: FloatArray, y: FloatArray, fitted_on: str = "") -> PlattCalibrator:
        _check_fit_inputs(z, y)
        (b, a), cov = fit_logistic(z, y)
        # reorder covariance from (intercept, slope) to (a=slope, b=intercept)
        c = ((float(cov[1, 1]), float(cov[1, 0])), (float(cov[0, 1]), float(cov[0, 0])))
        return cls(a=float(a), b=float(b), cov=c, fitted_on=fitted_on)

    def predict(self, z: FloatArray) -> FloatArray:
        return np.clip(sigmoid(self.a * np.asarray(z, dtype=np.float64) + self.b), P_MIN, 1 - P_MIN)

    def interval(self, z: float) -> tuple[float, float] | None:
        (vaa, vab), (_, vbb) = self.cov
        var = z * z * vaa + 2 * z * vab + vbb
        eta = self.a * z + self.b
        half = Z95 * math.sqrt(max(var, 0.0))
        lo, hi = sigmoid(np.array([eta - half, eta + half]))
        return float(max(lo, P_MIN)), float(min(hi, 1 - P_MIN))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": CALIBRATOR_FORMAT, "kind": self.kind.value, "a": self.a, "b": self.b,
                                "cov": [list(r) for r in self.cov], "fitted_on": self.fitted_on}
        data["id"] = _id(data)
        return data

    @property
    def id(self) -> str:
        return str(self.to_json()["id"])


@dataclass(frozen=True, slots=True)
class IsotonicCalibrator:
    """Blocks of a non-decreasing step function: ``[x_low[i], x_high[i]] -> rate[i]`` from ``n[i]`` samples."""

    x_low: tuple[float, ...]
    x_high: tuple[float, ...]
    rate: tuple[float, ...]
    n: tuple[int, ...]
    fitted_on: str = ""
    kind: CalibratorKind = CalibratorKind.ISOTONIC

    @classmethod
    def fit(cls, z: FloatArray, y: FloatArray, fitted_on: str = "") -> IsotonicCalibrator:
        _check_fit_inputs(z, y)
        order = np.argsort(z, kind="mergesort")
        zs, ys = np.asarray(z, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
        # pool ties first, so equal scores share one block
        uniq, start = np.unique(zs, return_index=True)
        sums = np.add.reduceat(ys, start)
        counts = np.diff(np.append(start, zs.size))
        lows: list[float] = list(uniq)
        highs: list[float] = list(uniq)
        s: list[float] = list(sums)
        c: list[int] = [int(v) for v in counts]
        # pool adjacent violators (stack-based)
        out_lo: list[float] = []
        out_hi: list[float] = []
        out_s: list[float] = []
        out_c: list[int] = []
        for lo, hi, si, ci in zip(lows, highs, s, c, strict=True):
            out_lo.append(lo)
            out_hi.append(hi)
            out_s.append(si)
            out_c.append(ci)
            while len(out_s) > 1 and out_s[-2] / out_c[-2] >= out_s[-1] / out_c[-1]:
                last_s, last_c, last_hi = out_s.pop(), out_c.pop(), out_hi.pop()
                out_lo.pop()
                out_s[-1] += last_s
                out_c[-1] += last_c
                out_hi[-1] = last_hi
        rates = tuple(float(si / ci) for si, ci in zip(out_s, out_c, strict=True))
        return cls(x_low=tuple(out_lo), x_high=tuple(out_hi), rate=rates, n=tuple(out_c), fitted_on=fitted_on)

    def _points(self) -> tuple[FloatArray, FloatArray]:
        xs: list[float] = []
        ys: list[float] = []
        for lo, hi, r in zip(self.x_low, self.x_high, self.rate, strict=True):
            xs.append(lo)
            ys.append(r)
            if hi > lo:
                xs.append(hi)
                ys.append(r)
        return np.array(xs), np.array(ys)

    def predict(self, z: FloatArray) -> FloatArray:
        xs, ys = self._points()
        return np.clip(np.interp(np.asarray(z, dtype=np.float64), xs, ys), P_MIN, 1 - P_MIN)

    def interval(self, z: float) -> tuple[float, float] | None:
        i = int(np.clip(np.searchsorted(np.array(self.x_high), z, side="left"), 0, len(self.rate) - 1))
        return wilson_interval(self.rate[i] * self.n[i], self.n[i])

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": CALIBRATOR_FORMAT, "kind": self.kind.value, "x_low": list(self.x_low),
                                "x_high": list(self.x_high), "rate": list(self.rate), "n": list(self.n),
                                "fitted_on": self.fitted_on}
        data["id"] = _id(data)
        return data

    @property
    def id(self) -> str:
        return str(self.to_json()["id"])


@dataclass(frozen=True, slots=True)
class IdentityCalibrator:
    """sigmoid(z): the model's own probability (used for the uncalibrated "before" in reports)."""

    kind: CalibratorKind = CalibratorKind.IDENTITY

    def predict(self, z: FloatArray) -> FloatArray:
        return np.clip(sigmoid(np.asarray(z, dtype=np.float64)), P_MIN, 1 - P_MIN)

    def interval(self, z: float) -> tuple[float, float] | None:
        return None

    def to_json(self) -> dict[str, Any]:
        return {"format": CALIBRATOR_FORMAT, "kind": self.kind.value, "id": "identity"}

    @property
    def id(self) -> str:
        return "identity"


def wilson_interval(events: float, n: int) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    p = events / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(P_MIN, centre - half), min(1 - P_MIN, centre + half))


def fit_calibrator(kind: CalibratorKind | str, z: FloatArray, y: FloatArray, fitted_on: str = "") -> Calibrator:
    kind = CalibratorKind(kind)
    if kind is CalibratorKind.PLATT:
        return PlattCalibrator.fit(z, y, fitted_on)
    if kind is CalibratorKind.ISOTONIC:
        return IsotonicCalibrator.fit(z, y, fitted_on)
    return IdentityCalibrator()


def calibrator_from_json(data: Mapping[str, Any]) -> Calibrator:
    kind = CalibratorKind(data["kind"])
    if kind is CalibratorKind.PLATT:
        cov = data["cov"]
        return PlattCalibrator(a=float(data["a"]), b=float(data["b"]),
                               cov=((float(cov[0][0]), float(cov[0][1])), (float(cov[1][0]), float(cov[1][1]))),
                               fitted_on=str(data.get("fitted_on", "")))
    if kind is CalibratorKind.ISOTONIC:
        return IsotonicCalibrator(x_low=tuple(map(float, data["x_low"])), x_high=tuple(map(float, data["x_high"])),
                                  rate=tuple(map(float, data["rate"])), n=tuple(map(int, data["n"])),
                                  fitted_on=str(data.get("fitted_on", "")))
    return IdentityCalibrator()


def _check_fit_inputs(z: FloatArray, y: FloatArray) -> None:
    z = np.asarray(z)
    y = np.asarray(y)
    if z.shape != y.shape or z.ndim != 1:
        raise ValueError('Arguments "z" and "y" must be 1-D arrays of the same length.')
    if not np.all(np.isfinite(z)):
        raise ValueError('Argument "z" must be finite.')
    if not np.all((y == 0) | (y == 1)):
        raise ValueError('Argument "y" must be 0/1.')
    if y.min() == y.max():
        raise ValueError('Argument "y" must contain both outcomes to fit a calibrator.')
