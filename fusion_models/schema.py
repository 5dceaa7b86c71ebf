"""The feature schema: names, kinds, units, modality and allowed missingness of every model input.

``fusion_models`` owns the schema and knows nothing of FHIR, DICOM or HTTP: a feature row is a plain mapping
``name -> float | str | bool | None`` (None = missing) and a feature table is a polars frame with one column per
feature. ``risk/features`` builds both, online (one PatientSnapshot) and offline (polars over tables), and
tests/features/test_fusion_row.py checks that they agree.

Encoding (identical for XGBoost and the torch network, one float32 matrix):

* ``numeric`` and ``binary`` features are one column each (booleans as 0/1);
* ``categorical`` features are one 0/1 column per level, named ``<feature>=<level>``;
* a missing value is NaN in every column of its feature (XGBoost's native missing value; the torch network
  turns NaN into a mask channel).

The **schema hash** is a SHA-256 over the canonical JSON of what changes a model's input meaning: the schema
name and task, the label, and per feature its name, kind, modality, unit, levels, allowed missingness and
whether it is required. Descriptions and explanation wording are not hashed (rewording a factor does not
invalidate a model). Every artifact records the hash; loading an artifact whose hash differs from the code's
schema fails.

Training ranges (the per-feature ranges seen in training, used for abstention) are data of each artifact, not
part of the schema hash: see :class:`TrainingRanges`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

FeatureValue = float | int | str | bool | None
FeatureRow = Mapping[str, FeatureValue]
FloatMatrix = npt.NDArray[np.float32]

SCHEMA_FORMAT = 1


class FeatureKind(StrEnum):
    NUMERIC = "numeric"
    BINARY = "binary"
    CATEGORICAL = "categorical"


class Modality(StrEnum):
    """Which branch of the late-fusion network a feature feeds; also the split for single-modality baselines."""

    EHR = "ehr"
    IMAGING = "imaging"


class Task(StrEnum):
    PATIENT = "patient"
    """Lung cancer diagnosed within ``horizon_years`` (1-6) of the index date, per patient."""
    NODULE = "nodule"
    """Malignancy of one nodule (aggregated per patient by the runtime)."""


FactorText = Callable[[FeatureValue, FeatureRow], str]
"""Renders a feature's value as a clinician-readable factor; receives the value and the whole row."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One model input."""

    name: str
    kind: FeatureKind
    modality: Modality
    unit: str
    """UCUM unit ("1" for dimensionless and categorical)."""
    description: str
    levels: tuple[str, ...] = ()
    allowed_missing: bool = True
    required: bool = False
    """Missing → the model abstains ("required input missing")."""
    plausible_range: tuple[float, float] | None = None
    """Values outside are input errors (ValueError naming the feature), not abstentions."""
    factor: FactorText | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f'Argument "name" must be an identifier, got {self.name!r}.')
        if (self.kind is FeatureKind.CATEGORICAL) != bool(self.levels):
            raise ValueError(f'Feature "{self.name}": "levels" are required for categorical features only.')
        if self.required and self.allowed_missing:
            raise ValueError(f'Feature "{self.name}": a required feature cannot allow missing values.')

    @property
    def encoded_columns(self) -> tuple[str, ...]:
        if self.kind is FeatureKind.CATEGORICAL:
            return tuple(f"{self.name}={level}" for level in self.levels)
        return (self.name,)

    def hashed(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind.value, "modality": self.modality.value, "unit": self.unit,
                "levels": list(self.levels), "allowed_missing": self.allowed_missing, "required": self.required}

    def describe(self, value: FeatureValue, row: FeatureRow) -> str:
        """The clinician-readable factor for ``value`` (the feature's own wording, else a generic one)."""
        if self.factor is not None:
            return self.factor(value, row)
        if value is None:
            return f"{self.description}: not recorded"
        if self.kind is FeatureKind.BINARY:
            return self.description if _truthy(value) else f"no {self.description}"
        if isinstance(value, float):
            return f"{self.description} {value:.3g}" + ("" if self.unit == "1" else f" {self.unit}")
        return f"{self.description}: {value}"


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """An ordered set of features for one task, with its label."""

    name: str
    task: Task
    label: str
    label_description: str
    features: tuple[FeatureSpec, ...]
    _index: Mapping[str, FeatureSpec] = field(init=False, repr=False, compare=False)
    _slots: Mapping[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError('Argument "features" must not repeat a name.')
        if self.label in names:
            raise ValueError('Argument "label" must not be a feature.')
        object.__setattr__(self, "_index", {f.name: f for f in self.features})
        slots: dict[str, tuple[int, ...]] = {}
        i = 0
        for f in self.features:
            n = len(f.encoded_columns)
            slots[f.name] = tuple(range(i, i + n))
            i += n
        object.__setattr__(self, "_slots", slots)

    # --- identity ------------------------------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        return {"format": SCHEMA_FORMAT, "name": self.name, "task": self.task.value, "label": self.label,
                "features": [f.hashed() for f in self.features]}

    @property
    def hash(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The schema as stored in an artifact (hashed part plus descriptions, for humans)."""
        data = self.canonical()
        data["hash"] = self.hash
        data["label_description"] = self.label_description
        for spec, entry in zip(self.features, data["features"], strict=True):
            entry["description"] = spec.description
            entry["plausible_range"] = list(spec.plausible_range) if spec.plausible_range else None
        return data

    # --- lookup --------------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def __getitem__(self, name: str) -> FeatureSpec:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def encoded_columns(self) -> tuple[str, ...]:
        return tuple(c for f in self.features for c in f.encoded_columns)

    def slots(self, name: str) -> tuple[int, ...]:
        """Indices of ``name``'s encoded columns."""
        return self._slots[name]

    def modality_columns(self, modality: Modality) -> tuple[int, ...]:
        return tuple(i for f in self.features if f.modality is modality for i in self._slots[f.name])

    def features_of(self, modality: Modality) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.modality is modality)

    def subset(self, modality: Modality) -> FeatureSchema:
        """The single-modality schema (for the imaging-only and EHR-only baselines)."""
        return FeatureSchema(name=f"{self.name}-{modality.value}-only", task=self.task, label=self.label,
                             label_description=self.label_description,
                             features=tuple(f for f in self.features if f.modality is modality))

    # --- validation and encoding ---------------------------------------------------------------------------
    def check_value(self, name: str, value: FeatureValue) -> FeatureValue:
        """``value`` normalised (bool → 0/1, int → float), or ValueError naming the feature."""
        spec = self._index[name]
        if value is None:
            return None
        if isinstance(value, float) and math.isnan(value):
            return None
        if spec.kind is FeatureKind.CATEGORICAL:
            if not isinstance(value, str):
                raise ValueError(f'Feature "{name}" must be one of {list(spec.levels)} or None, got {value!r}.')
            return value
        if spec.kind is FeatureKind.BINARY:
            if isinstance(value, bool) or value in (0, 1):
                return 1.0 if value else 0.0
            raise ValueError(f'Feature "{name}" must be a boolean (or 0/1) or None, got {value!r}.')
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f'Feature "{name}" must be a finite number or None, got {value!r}.')
        v = float(value)
        if spec.plausible_range is not None and not spec.plausible_range[0] <= v <= spec.plausible_range[1]:
            lo, hi = spec.plausible_range
            raise ValueError(f'Feature "{name}" = {v:g} is outside the plausible range {lo:g}-{hi:g} {spec.unit}.')
        return v

    def encode_row(self, row: FeatureRow, out: FloatMatrix | None = None) -> FloatMatrix:
        """One row as a (1, n_encoded) float32 matrix; unknown keys are errors, absent keys are missing."""
        unknown = set(row) - set(self._index)
        if unknown:
            raise ValueError(f"Unknown feature(s) {sorted(unknown)} for schema {self.name!r}.")
        x = np.full((1, len(self.encoded_columns)), np.nan, dtype=np.float32) if out is None else out
        for spec in self.features:
            value = self.check_value(spec.name, row.get(spec.name))
            if value is None:
                continue
            slots = self._slots[spec.name]
            if spec.kind is FeatureKind.CATEGORICAL:
                x[0, slots[0]:slots[-1] + 1] = 0.0
                if value in spec.levels:
                    x[0, slots[spec.levels.index(str(value))]] = 1.0
                else:  # an unseen level: missing (the runtime abstains on it before getting here)
                    x[0, slots[0]:slots[-1] + 1] = np.nan
            else:
                x[0, slots[0]] = float(value)
        return x

    def encode_frame(self, frame: pl.DataFrame) -> FloatMatrix:
        """A feature table as an (n, n_encoded) float32 matrix (nulls and NaN → NaN; unknown levels → NaN)."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise ValueError(f"Feature table lacks column(s) {missing} of schema {self.name!r}.")
        # One polars query: plain columns as float32 and categorical columns as level codes, nulls filled with NaN
        # there so that to_numpy is a plain copy rather than a null-aware conversion; one-hot in numpy.
        exprs = []
        for f in self.features:
            col = pl.col(f.name)
            if f.kind is FeatureKind.CATEGORICAL:
                col = col.cast(pl.String).replace_strict(list(f.levels), list(range(len(f.levels))), default=None,
                                                         return_dtype=pl.Float32)
            exprs.append(col.cast(pl.Float32).fill_null(float("nan")).alias(f.name))
        values = frame.select(exprs).to_numpy()
        x = np.empty((frame.height, len(self.encoded_columns)), dtype=np.float32)
        for j, f in enumerate(self.features):
            start = self._slots[f.name][0]
            if f.kind is not FeatureKind.CATEGORICAL:
                x[:, start] = values[:, j]
                continue
            codes = values[:, j]
            block = (codes[:, None] == np.arange(len(f.levels), dtype=np.float32)[None, :]).astype(np.float32)
            block[np.isnan(codes)] = np.nan
            x[:, start:start + len(f.levels)] = block
        return x


def _truthy(value: FeatureValue) -> bool:
    return bool(value) and value not in ("0", "false", "False")


@dataclass(frozen=True, slots=True)
class FeatureRange:
    """What training saw of one feature: numeric min/max, or categorical levels."""

    name: str
    low: float | None = None
    high: float | None = None
    levels: tuple[str, ...] = ()
    missing_fraction: float = 0.0


@dataclass(frozen=True, slots=True)
class TrainingRanges:
    """Per-feature training ranges of one artifact (stored as JSON next to the model)."""

    schema_hash: str
    ranges: Mapping[str, FeatureRange]

    @classmethod
    def from_frame(cls, schema: FeatureSchema, frame: pl.DataFrame) -> TrainingRanges:
        ranges: dict[str, FeatureRange] = {}
        n = max(frame.height, 1)
        for spec in schema.features:
            col = frame.get_column(spec.name)
            missing = col.null_count() / n
            if spec.kind is FeatureKind.CATEGORICAL:
                levels = tuple(sorted(str(v) for v in col.drop_nulls().unique().to_list()))
                ranges[spec.name] = FeatureRange(spec.name, levels=levels, missing_fraction=missing)
            else:
                values = col.cast(pl.Float64).fill_nan(None).drop_nulls()
                lo = float(values.min()) if values.len() else None  # type: ignore[arg-type]
                hi = float(values.max()) if values.len() else None  # type: ignore[arg-type]
                ranges[spec.name] = FeatureRange(spec.name, low=lo, high=hi, missing_fraction=missing)
        return cls(schema_hash=schema.hash, ranges=ranges)

    def to_json(self) -> dict[str, Any]:
        return {"schema_hash": self.schema_hash, "ranges": {
            r.name: {"low": r.low, "high": r.high, "levels": list(r.levels), "missing_fraction": r.missing_fraction}
            for r in self.ranges.values()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingRanges:
        ranges = {name: FeatureRange(name, low=r["low"], high=r["high"], levels=tuple(r["levels"]),
                                     missing_fraction=float(r["missing_fraction"]))
                  for name, r in data["ranges"].items()}
        return cls(schema_hash=str(data["schema_hash"]), ranges=ranges)


def check_schema_hash(schema: FeatureSchema, recorded: str, where: str) -> None:
    from fusion_models.errors import ArtifactInvalid

    if schema.hash != recorded:
        raise ArtifactInvalid(f"{where}: artifact was trained on feature schema {recorded[:12]}…, but the code's "
                         f"schema {schema.name!r} hashes to {schema.hash[:12]}…; retrain or use a matching version.")


def require_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}.")
