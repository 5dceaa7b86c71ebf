"""Nodule volume, volume doubling time (VDT) and the NELSON growth rules.

Source: shared/reference/clinical-models.md §6.

* VDT = t · ln 2 / ln(V2/V1), t in days (Schwartz 1961). From sphere diameters this equals
  t · ln 2 / (3 · ln(D2/D1)).
* Volume: sphere π/6·d³; ellipsoid π/6·a·b·c from three orthogonal diameters. With two in-plane
  axes only (long, short), the third axis is taken equal to the short axis: π/6·L·S², the
  convention of 2-D "ellipsoid" volumetry. The chosen formula is reported in ``volume_method``.
* NELSON (van Klaveren RJ et al., N Engl J Med 2009;361:2221-2229): growth is a volume increase of
  at least 25 % between two scans; grown nodules with VDT < 400 days are positive (referral).
  The finer 400-600 day "indeterminate" and > 600 day bands come from the NELSON protocol paper
  (Xu DM et al., Lung Cancer 2006;54:177-184; flagged in the reference as from memory).
* No growth and shrinkage are reported as categories; their VDT is ``None``, never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from risk.guidelines._common import CalculatorInput, field_error
from risk.guidelines.result import ModelOutputs, ModelResult, scored

NELSON_GROWTH_THRESHOLD_PCT = 25.0
VDT_POSITIVE_BELOW_DAYS = 400.0
VDT_NEGATIVE_ABOVE_DAYS = 600.0

MODEL_NAME = "Volume doubling time (NELSON growth rules)"
MODEL_ID = "vdt"
MODEL_VERSION = "nelson-2009"
CITATION = (
    "Schwartz M. Cancer 1961;14:1272-94 (VDT); van Klaveren RJ et al. N Engl J Med 2009;361:2221-2229 "
    "(NELSON 25% growth, VDT < 400 d); Xu DM et al. Lung Cancer 2006;54:177-184 (400-600 d band)."
)


class VolumeMethod(StrEnum):
    MEASURED = "measured"
    SPHERE = "sphere"
    ELLIPSOID_3_AXES = "ellipsoid_3_axes"
    ELLIPSOID_2_AXES = "ellipsoid_2_axes"


class GrowthCategory(StrEnum):
    """The growth call between two measurements."""

    SHRINKING = "shrinking"
    """Volume decreased: no VDT."""
    NO_CHANGE = "no_change"
    """Identical volume: no VDT (doubling time infinite)."""
    BELOW_THRESHOLD = "below_threshold"
    """Volume increased by less than 25 %: not growth by NELSON (within measurement variability)."""
    GROWTH_VDT_UNDER_400 = "growth_vdt_under_400"
    """Growth (≥ 25 %) with VDT < 400 days: NELSON positive, refer."""
    GROWTH_VDT_400_TO_600 = "growth_vdt_400_to_600"
    """Growth with VDT 400-600 days: NELSON indeterminate."""
    GROWTH_VDT_OVER_600 = "growth_vdt_over_600"
    """Growth with VDT > 600 days: NELSON negative (slow growth)."""

    @property
    def is_growth(self) -> bool:
        return self.value.startswith("growth_")


def sphere_volume_mm3(diameter_mm: float) -> float:
    """π/6 · d³."""
    _positive("diameter_mm", diameter_mm)
    return math.pi / 6.0 * diameter_mm**3


def ellipsoid_volume_mm3(a_mm: float, b_mm: float, c_mm: float) -> float:
    """π/6 · a · b · c for three orthogonal diameters."""
    for name, v in (("a_mm", a_mm), ("b_mm", b_mm), ("c_mm", c_mm)):
        _positive(name, v)
    return math.pi / 6.0 * a_mm * b_mm * c_mm


def two_axis_ellipsoid_volume_mm3(long_axis_mm: float, short_axis_mm: float) -> float:
    """π/6 · L · S²: the ellipsoid with its third axis equal to the short axis (2-D measurements)."""
    return ellipsoid_volume_mm3(long_axis_mm, short_axis_mm, short_axis_mm)


def volume_doubling_time_days(v1_mm3: float, v2_mm3: float, interval_days: float) -> float | None:
    """Schwartz VDT in days; ``None`` when the volume did not increase (no doubling)."""
    _positive("v1_mm3", v1_mm3)
    _positive("v2_mm3", v2_mm3)
    _positive("interval_days", interval_days)
    if v2_mm3 <= v1_mm3:
        return None
    return interval_days * math.log(2.0) / math.log(v2_mm3 / v1_mm3)


@dataclass(frozen=True, slots=True)
class GrowthResult:
    """Growth between two time points, as reported to clinicians."""

    v1_mm3: float
    v2_mm3: float
    interval_days: float
    volume_change_pct: float
    vdt_days: float | None
    category: GrowthCategory
    volume_method: VolumeMethod

    def __post_init__(self) -> None:
        _positive("v1_mm3", self.v1_mm3)
        _positive("v2_mm3", self.v2_mm3)
        _positive("interval_days", self.interval_days)
        no_increase = self.category in (GrowthCategory.SHRINKING, GrowthCategory.NO_CHANGE)
        if no_increase != (self.vdt_days is None):
            raise ValueError('Argument "vdt_days" must be None exactly when the volume did not increase.')

    @property
    def description(self) -> str:
        months = self.interval_days / 30.4375
        if self.category is GrowthCategory.SHRINKING:
            return f"shrank {abs(self.volume_change_pct):.0f}% in {months:.0f} months"
        if self.category is GrowthCategory.NO_CHANGE:
            return f"no change in {months:.0f} months"
        if self.category is GrowthCategory.BELOW_THRESHOLD:
            return (f"stable (+{self.volume_change_pct:.0f}% volume, below the 25% growth threshold) "
                    f"in {months:.0f} months")
        return (f"grew {self.volume_change_pct:.0f}% in {months:.0f} months "
                f"(doubling time {self.vdt_days:.0f} days)")


def assess_growth(v1_mm3: float, v2_mm3: float, interval_days: float,
                  volume_method: VolumeMethod = VolumeMethod.MEASURED) -> GrowthResult:
    """Classify the change from ``v1_mm3`` to ``v2_mm3`` over ``interval_days`` by the NELSON rules."""
    vdt = volume_doubling_time_days(v1_mm3, v2_mm3, interval_days)
    change_pct = (v2_mm3 - v1_mm3) / v1_mm3 * 100.0
    if v2_mm3 < v1_mm3:
        category = GrowthCategory.SHRINKING
    elif v2_mm3 == v1_mm3:
        category = GrowthCategory.NO_CHANGE
    elif change_pct < NELSON_GROWTH_THRESHOLD_PCT:
        category = GrowthCategory.BELOW_THRESHOLD
    else:
        assert vdt is not None
        if vdt < VDT_POSITIVE_BELOW_DAYS:
            category = GrowthCategory.GROWTH_VDT_UNDER_400
        elif vdt <= VDT_NEGATIVE_ABOVE_DAYS:
            category = GrowthCategory.GROWTH_VDT_400_TO_600
        else:
            category = GrowthCategory.GROWTH_VDT_OVER_600
    return GrowthResult(v1_mm3=v1_mm3, v2_mm3=v2_mm3, interval_days=interval_days,
                        volume_change_pct=change_pct, vdt_days=vdt, category=category,
                        volume_method=volume_method)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f'Argument "{name}" must be a positive finite number, got {value!r}.')


# ---- The `vdt` calculator (risk calc vdt, POST /api/calculators/vdt) ----

Axes = Annotated[list[Annotated[float, Field(gt=0, le=300)]], Field(min_length=2, max_length=3)]


class VdtInput(CalculatorInput):
    """Two measurements of one nodule and the days between them. Give exactly one pair: diameters
    (``d1_mm``, ``d2_mm``: sphere volumes), axes (``axes1_mm``, ``axes2_mm``: two or three orthogonal diameters
    per time point, ellipsoid volumes) or volumes (``v1_mm3``, ``v2_mm3``: measured, e.g. segmented)."""

    interval_days: Annotated[float, Field(gt=0, le=36500, description="Days from the first to the second scan.")]
    d1_mm: Annotated[float | None, Field(gt=0, le=300, description="Diameter at the first scan.")] = None
    d2_mm: Annotated[float | None, Field(gt=0, le=300, description="Diameter at the second scan.")] = None
    axes1_mm: Axes | None = Field(default=None, description=(
        "Two (long, short) or three orthogonal diameters at the first scan, mm."))
    axes2_mm: Axes | None = Field(default=None, description=(
        "The same axes at the second scan (same count as axes1_mm), mm."))
    v1_mm3: Annotated[float | None, Field(gt=0, le=1e7, description="Volume at the first scan.")] = None
    v2_mm3: Annotated[float | None, Field(gt=0, le=1e7, description="Volume at the second scan.")] = None

    @model_validator(mode="after")
    def _one_pair(self) -> VdtInput:
        pairs = {"d": (self.d1_mm, self.d2_mm), "axes": (self.axes1_mm, self.axes2_mm),
                 "v": (self.v1_mm3, self.v2_mm3)}
        given = [k for k, (a, b) in pairs.items() if a is not None or b is not None]
        if not given:
            raise field_error("d1_mm", "give d1_mm and d2_mm, axes1_mm and axes2_mm, or v1_mm3 and v2_mm3")
        if len(given) > 1:
            raise field_error(_first_field(given[1]), "give only one of the diameter, axes or volume pairs")
        first, second = pairs[given[0]]
        if first is None:
            raise field_error(_first_field(given[0]), "required with its pair")
        if second is None:
            raise field_error(_first_field(given[0]).replace("1", "2"), "required with its pair")
        if self.axes1_mm is not None and self.axes2_mm is not None and len(self.axes1_mm) != len(self.axes2_mm):
            raise field_error("axes2_mm", "must have as many axes as axes1_mm")
        return self

    def volumes(self) -> tuple[float, float, VolumeMethod]:
        """(v1, v2, method)."""
        if self.v1_mm3 is not None and self.v2_mm3 is not None:
            return self.v1_mm3, self.v2_mm3, VolumeMethod.MEASURED
        if self.d1_mm is not None and self.d2_mm is not None:
            return sphere_volume_mm3(self.d1_mm), sphere_volume_mm3(self.d2_mm), VolumeMethod.SPHERE
        assert self.axes1_mm is not None and self.axes2_mm is not None
        if len(self.axes1_mm) == 3:
            return (ellipsoid_volume_mm3(*self.axes1_mm), ellipsoid_volume_mm3(*self.axes2_mm),
                    VolumeMethod.ELLIPSOID_3_AXES)
        return (two_axis_ellipsoid_volume_mm3(*self.axes1_mm), two_axis_ellipsoid_volume_mm3(*self.axes2_mm),
                VolumeMethod.ELLIPSOID_2_AXES)


def _first_field(pair: str) -> str:
    return {"d": "d1_mm", "axes": "axes1_mm", "v": "v1_mm3"}[pair]


class VdtOutputs(ModelOutputs):
    v1_mm3: float = Field(gt=0, description="Volume at the first scan.")
    v2_mm3: float = Field(gt=0, description="Volume at the second scan.")
    volume_method: VolumeMethod
    volume_change_pct: float = Field(description="(v2 − v1) / v1 × 100; negative for shrinkage.")
    vdt_days: float | None = Field(description="Volume doubling time; null when the volume did not increase.")
    growth_category: GrowthCategory
    nelson_growth: bool = Field(description="Volume increased by at least 25 % (NELSON growth).")
    description: str


VdtResult = ModelResult[VdtOutputs]


def compute_vdt(data: VdtInput) -> VdtResult:
    """Volume change, doubling time and NELSON growth category between two scans."""
    v1, v2, method = data.volumes()
    g = assess_growth(v1, v2, data.interval_days, method)
    warnings: list[str] = []
    if g.category is GrowthCategory.GROWTH_VDT_400_TO_600 or g.category is GrowthCategory.GROWTH_VDT_OVER_600:
        warnings.append("the 400-600 day and > 600 day VDT bands are from the NELSON protocol paper (Xu 2006), "
                        "recalled rather than re-read; the < 400 day band and the 25 % threshold are verified")
    outputs = VdtOutputs(v1_mm3=g.v1_mm3, v2_mm3=g.v2_mm3, volume_method=g.volume_method,
                         volume_change_pct=g.volume_change_pct, vdt_days=g.vdt_days, growth_category=g.category,
                         nelson_growth=g.category.is_growth, description=g.description)
    return scored(VdtResult, model=MODEL_ID, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=outputs, warnings=warnings)
