"""Per-prediction explanations, mapped to clinician-readable factors.

* XGBoost: exact TreeSHAP contributions (``pred_contribs=True``; Lundberg et al., Nat Mach Intell 2020). One
  value per encoded column; the one-hot columns of a categorical feature are summed back to the feature.
* Late-fusion network: feature occlusion (ablation) against the training means (torch_fusion.py).
* The final model is a blend ``w · xgb + (1 − w) · net`` of log-odds scores, so a feature's contribution is the
  same blend of its two contributions. Contributions are on the log-odds scale *before* calibration: their
  signs and ranking say what pushed the score up or down; the calibrated probability is a monotone map of the
  score.

Factors are worded by each feature's ``factor`` function in fusion_models/features.py ("32 pack-years",
"nodule grew 38% in 5 months").

``Contribution`` here is fusion_models' own type (this package does not import ``risk``);
``risk.features.fusion_row.to_domain_contributions`` converts it to ``risk.domain.Contribution``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusion_models.schema import FeatureRow, FeatureSchema, FeatureValue

FloatArray = npt.NDArray[np.float64]

DEFAULT_TOP_K = 6
MIN_ABS_CONTRIBUTION = 1e-3


@dataclass(frozen=True, slots=True)
class Contribution:
    """One feature's share of a prediction on the log-odds scale, with the readable factor."""

    feature: str
    contribution: float
    description: str
    value: FeatureValue = None


def column_groups(schema: FeatureSchema) -> tuple[tuple[int, ...], ...]:
    """Encoded-column indices of each source feature, in schema order."""
    return tuple(schema.slots(name) for name in schema.names)


def group_columns(schema: FeatureSchema, per_column: FloatArray) -> FloatArray:
    """Sum per-encoded-column values (e.g. TreeSHAP) to one value per source feature; drops a bias column."""
    groups = column_groups(schema)
    return np.array([float(per_column[list(cols)].sum()) for cols in groups], dtype=np.float64)


def top_factors(schema: FeatureSchema, row: FeatureRow, per_feature: FloatArray,
                top_k: int = DEFAULT_TOP_K) -> tuple[Contribution, ...]:
    """The ``top_k`` factors by absolute contribution, largest first, worded for clinicians.

    Features that render the same sentence describe one fact (volume change, interval and doubling rate are all
    "nodule grew 38% in 5 months"; a never-smoker's missing intensity, duration and quit date are all "never
    smoked"): their contributions are summed into one factor, named after its largest feature. Factors with a
    negligible contribution (< 1e-3 log-odds) are left out; ties keep schema order.
    """
    merged: dict[str, _Factor] = {}
    for i, name in enumerate(schema.names):
        value = float(per_feature[i])
        raw = row.get(name)
        text = schema[name].describe(raw, row) or name
        factor = merged.get(text)
        if factor is None:
            merged[text] = _Factor(name, value, raw, abs(value))
        else:
            factor.total += value
            if abs(value) > factor.largest:
                factor.feature, factor.value, factor.largest = name, raw, abs(value)
    ranked = sorted(merged.items(), key=lambda kv: -abs(kv[1].total))
    out: list[Contribution] = []
    for text, f in ranked[:top_k]:
        if abs(f.total) < MIN_ABS_CONTRIBUTION:
            break
        out.append(Contribution(feature=f.feature, contribution=f.total, description=text, value=f.value))
    return tuple(out)


@dataclass(slots=True)
class _Factor:
    feature: str
    total: float
    value: FeatureValue
    largest: float
