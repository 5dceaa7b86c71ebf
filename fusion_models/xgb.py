"""Gradient-boosted trees (XGBoost) on the encoded feature matrix, with native missing values.

Missing values stay NaN: XGBoost learns a default direction per split (Chen & Guestrin 2016, "sparsity-aware
split finding"), so a patient without labs or without imaging is scored without imputation. Stored in
XGBoost's own UBJSON format (``Booster.save_model("*.ubj")``), never pickled.

Trees are kept shallow (depth 4 by default): exact TreeSHAP contributions (``pred_contribs=True``) cost
O(trees · leaves · depth²) per row, and the per-prediction explanation must stay within a small multiple of
a plain prediction (bench/bench_predict.py).
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

FloatMatrix = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]

MODEL_FILE = "xgb.ubj"
_CONTRIBS_CONFIG = json.dumps({"type": 2, "training": False, "iteration_begin": 0, "iteration_end": 0,
                               "strict_shape": False}).encode()


@dataclass(frozen=True, slots=True)
class XgbParams:
    max_depth: int = 4
    eta: float = 0.1
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    min_child_weight: float = 2.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 2.0
    nthread: int = 1
    seed: int = 0
    imaging_dropout: float = 0.15
    """Share of training rows added again with imaging blanked (training.py ``_imaging_dropout``)."""

    def booster_params(self) -> dict[str, Any]:
        return {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                "max_depth": self.max_depth, "eta": self.eta, "min_child_weight": self.min_child_weight,
                "subsample": self.subsample, "colsample_bytree": self.colsample_bytree, "lambda": self.reg_lambda,
                "nthread": self.nthread, "seed": self.seed}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _column_names(columns: tuple[str, ...]) -> list[str]:
    # XGBoost rejects "[", "]" and "<" in feature names; "=" is fine.
    return [c.replace("[", "(").replace("]", ")").replace("<", "lt") for c in columns]


def train_booster(x_train: FloatMatrix, y_train: FloatArray, x_val: FloatMatrix, y_val: FloatArray,
                  columns: tuple[str, ...], params: XgbParams) -> xgb.Booster:
    """Fit with early stopping on the validation log-loss; the returned booster keeps only the best rounds."""
    names = _column_names(columns)
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=names, missing=np.nan)
    dval = xgb.DMatrix(x_val, label=y_val, feature_names=names, missing=np.nan)
    booster = xgb.train(params.booster_params(), dtrain, num_boost_round=params.num_boost_round,
                        evals=[(dval, "validation")], early_stopping_rounds=params.early_stopping_rounds,
                        verbose_eval=False)
    best = booster.best_iteration + 1
    return booster[:best]


class XgbModel:
    """A loaded booster with the two calls the runtime needs: margins and per-column contributions."""

    def __init__(self, booster: xgb.Booster, nthread: int = 1) -> None:
        self.booster = booster
        self.nthread = nthread
        self.booster.set_param({"nthread": nthread})
        self.n_columns = booster.num_features()
        self._dmatrix_config = json.dumps({"missing": float("nan"), "nthread": nthread}).encode()
        self._direct: tuple[Any, Any, Any] | None = None
        try:
            from xgboost.core import _LIB, _check_call, c_bst_ulong

            self._direct = (_LIB, _check_call, c_bst_ulong)
        except ImportError:  # pragma: no cover - a future xgboost without these names: public API
            self._direct = None

    def margin(self, x: FloatMatrix) -> FloatArray:
        """Raw scores (log-odds) for a batch; ``inplace_predict`` avoids building a DMatrix."""
        out = self.booster.inplace_predict(x, predict_type="margin", missing=np.nan)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def contributions(self, x: FloatMatrix) -> FloatArray:
        """Exact TreeSHAP contributions (Lundberg et al. 2020), shape (n, n_columns + 1); last column = bias.

        Each row sums to the margin. Named columns are set on the booster, so the DMatrix must carry them too.
        """
        # nthread on the DMatrix too: its default (all cores) wakes an OpenMP team per single-row call, which then
        # spins against torch's pool when both models run on one row.
        dm = xgb.DMatrix(x, missing=np.nan, feature_names=self.booster.feature_names, nthread=self.nthread)
        return np.asarray(self.booster.predict(dm, pred_contribs=True, validate_features=False), dtype=np.float64)

    def contributions_one(self, x: FloatMatrix) -> FloatArray:
        """TreeSHAP contributions of one C-contiguous float32 row, through XGBoost's C API directly.

        The same two C calls ``contributions`` makes (``XGDMatrixCreateFromDense``,
        ``XGBoosterPredictFromDMatrix`` with type 2 = contributions; xgboost/c_api.h), without the Python
        wrapper's per-call work (feature validation, JSON configs, output reshaping), which costs more than the
        prediction itself for one row (performance.md §3: ~120 µs fixed per call). Falls back to the public
        API if the binding is unavailable; tests check both give identical values.
        """
        if self._direct is None:
            return self.contributions(x)[0]
        lib, check, ulong = self._direct
        row = np.ascontiguousarray(x, dtype=np.float32)
        interface = json.dumps({"data": (row.ctypes.data, True), "shape": row.shape, "typestr": "<f4",
                                "version": 3, "strides": None}).encode()
        handle = ctypes.c_void_p()
        check(lib.XGDMatrixCreateFromDense(interface, self._dmatrix_config, ctypes.byref(handle)))
        try:
            shape = ctypes.POINTER(ulong)()
            dims = ulong()
            preds = ctypes.POINTER(ctypes.c_float)()
            check(lib.XGBoosterPredictFromDMatrix(self.booster.handle, handle, _CONTRIBS_CONFIG, ctypes.byref(shape),
                                                  ctypes.byref(dims), ctypes.byref(preds)))
            n = int(np.prod([shape[i] for i in range(dims.value)]))
            return np.ctypeslib.as_array(preds, shape=(n,)).astype(np.float64)
        finally:
            check(lib.XGDMatrixFree(handle))

    def save(self, directory: Path) -> Path:
        path = directory / MODEL_FILE
        self.booster.save_model(path)
        return path

    @classmethod
    def load(cls, directory: Path, nthread: int = 1) -> XgbModel:
        booster = xgb.Booster()
        booster.load_model(directory / MODEL_FILE)
        # Feature names are in the file for people reading it; at run time the column order is the schema's and
        # XGBoost's per-call name validation costs more than a single-row prediction.
        booster.feature_names = None
        booster.feature_types = None
        return cls(booster, nthread=nthread)
