"""Inputs of the Lung-RADS v2022 calculator: one screening exam and its findings.

An exam (:class:`LungRadsInput`) has exam-level flags (category 0 conditions, the S modifier) and a list of
findings, each one of three kinds told apart by ``finding``:

* ``"nodule"`` (:class:`ParenchymalNodule`): solid, part-solid or non-solid; juxtapleural or not; benign
  calcification or fat; measured now and, for nodules seen before, at earlier exams (``priors``).
* ``"airway_nodule"`` (:class:`AirwayNodule`): subsegmental, or segmental or more proximal.
* ``"atypical_cyst"`` (:class:`AtypicalCyst`): thick-walled or multilocular cysts and their changes.

Every finding has a ``status``: ``baseline`` (first screening exam), ``new`` (not on the prior exam) or
``existing`` (seen on a prior exam). One exam holds either baseline findings only, or new and existing ones.

Sizes: give the long and short axes (mm, measured to one decimal in any plane) or the mean diameter. Axes are
rounded half up to one decimal, and the mean of the two is rounded half up to one decimal, in decimal
arithmetic (ACR gives no tie rule; 6.2 and 5.7 give 5.95, reported as 6.0). A given ``mean_diameter_mm`` is
rounded the same way. Volumes are not accepted: the volume bands are sphere equivalents of the diameter
thresholds, and Lung-RADS grades on mean diameter.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Discriminator, Field, StrictBool, Tag, model_validator

from risk.guidelines._common import ONE_DECIMAL, CalculatorInput, field_error, mean_of_axes, round_half_up, to_decimal

Millimetres = Annotated[float, Field(gt=0, le=300)]


class LungRadsCategory(StrEnum):
    """Lung-RADS v2022 assessment categories (RadLex RID50135-RID50141 in risk/codes.py)."""

    C0 = "0"
    """Incomplete: prior CT being located, lungs not fully evaluable, or infectious/inflammatory findings."""
    C1 = "1"
    """Negative: no nodules, or nodules with benign calcification or fat."""
    C2 = "2"
    """Benign appearance or behaviour."""
    C3 = "3"
    """Probably benign."""
    C4A = "4A"
    """Suspicious."""
    C4B = "4B"
    """Very suspicious."""
    C4X = "4X"
    """Category 3 or 4 with additional features or imaging findings that increase suspicion of cancer."""

    @property
    def rank(self) -> int:
        """Order of suspicion among categorised findings (0 is an exam-level state, ranked lowest)."""
        return _RANK[self]


_RANK = {LungRadsCategory.C0: 0, LungRadsCategory.C1: 1, LungRadsCategory.C2: 2, LungRadsCategory.C3: 3,
         LungRadsCategory.C4A: 4, LungRadsCategory.C4B: 5, LungRadsCategory.C4X: 6}

FindingStatus = Literal["baseline", "new", "existing"]
Composition = Literal["solid", "part_solid", "nonsolid"]


class BenignFeature(StrEnum):
    """Features that make a nodule Lung-RADS 1."""

    COMPLETE_CALCIFICATION = "complete_calcification"
    CENTRAL_CALCIFICATION = "central_calcification"
    POPCORN_CALCIFICATION = "popcorn_calcification"
    CONCENTRIC_RING_CALCIFICATION = "concentric_ring_calcification"
    FAT = "fat"
    """Fat-containing nodule."""


class _Sized(CalculatorInput):
    long_axis_mm: Millimetres | None = Field(default=None, description="Long axis, mm (one decimal).")
    short_axis_mm: Millimetres | None = Field(default=None, description="Short axis, mm (one decimal).")
    mean_diameter_mm: Millimetres | None = Field(default=None, description=(
        "Mean diameter, mm, instead of the two axes."))

    def _check_size(self, prefix: str = "", *, required: bool = True) -> None:
        axes = (self.long_axis_mm, self.short_axis_mm)
        if self.mean_diameter_mm is not None and any(a is not None for a in axes):
            raise field_error(f"{prefix}mean_diameter_mm", "give the two axes or the mean diameter, not both")
        if (self.long_axis_mm is None) != (self.short_axis_mm is None):
            missing = "short_axis_mm" if self.short_axis_mm is None else "long_axis_mm"
            raise field_error(f"{prefix}{missing}", "required with its pair")
        if self.long_axis_mm is not None and self.short_axis_mm is not None and \
                self.short_axis_mm > self.long_axis_mm:
            raise field_error(f"{prefix}short_axis_mm", "must not exceed long_axis_mm")
        if required and self.mean_diameter_mm is None and self.long_axis_mm is None:
            raise field_error(f"{prefix}long_axis_mm", "give long_axis_mm and short_axis_mm, or mean_diameter_mm")

    @property
    def mean_mm(self) -> Decimal | None:
        """Mean diameter rounded half up to one decimal (from rounded axes when axes were given)."""
        if self.long_axis_mm is not None and self.short_axis_mm is not None:
            long_mm = round_half_up(to_decimal(self.long_axis_mm), ONE_DECIMAL)
            short_mm = round_half_up(to_decimal(self.short_axis_mm), ONE_DECIMAL)
            return mean_of_axes(float(long_mm), float(short_mm), ONE_DECIMAL)
        if self.mean_diameter_mm is not None:
            return round_half_up(to_decimal(self.mean_diameter_mm), ONE_DECIMAL)
        return None


class SolidComponent(_Sized):
    """The solid component of a part-solid nodule."""

    @model_validator(mode="after")
    def _size(self) -> SolidComponent:
        self._check_size()
        return self


class PriorMeasurement(_Sized):
    """The finding at an earlier exam."""

    interval_days: Annotated[float, Field(gt=0, le=36500, description=(
        "Days from that exam to the current exam."))]
    composition: Composition | None = Field(default=None, description=(
        "Composition then, if different (a non-solid nodule that is part-solid now has a new solid component)."))
    solid_component: SolidComponent | None = Field(default=None, description="Solid component then.")

    @model_validator(mode="after")
    def _size(self) -> PriorMeasurement:
        self._check_size(required=False)
        return self


class _Finding(CalculatorInput):
    id: Annotated[str | None, Field(max_length=200, description="Caller's label for the finding.")] = None
    status: FindingStatus = Field(description="baseline | new | existing.")
    prior_category: LungRadsCategory | None = Field(default=None, strict=False, description=(
        "Lung-RADS category of this finding at the most recent prior exam (existing findings): drives the "
        "stepped management (3 stable → 2; 4A stable → 3; airway 4A persisting → 4B)."))

    def _check_status(self) -> None:
        if self.status != "existing" and self.prior_category is not None:
            raise field_error("prior_category", "only for existing findings")


class ParenchymalNodule(_Sized, _Finding):
    """A lung nodule: solid, part-solid or non-solid (ground-glass), juxtapleural or not."""

    finding: Literal["nodule"] = "nodule"
    composition: Composition = Field(description="solid | part_solid | nonsolid (ground-glass).")
    solid_component: SolidComponent | None = Field(default=None, description=(
        "Solid component of a part-solid nodule (required for part_solid)."))
    juxtapleural: StrictBool = Field(default=False, description=(
        "Attached to the pleura (costal, mediastinal, diaphragmatic or fissural)."))
    smooth_margins: StrictBool | None = Field(default=None, description="Smooth margins (juxtapleural rule).")
    shape: Literal["oval", "lentiform", "triangular", "other"] | None = Field(default=None, description=(
        "Shape (juxtapleural rule: oval, lentiform or triangular)."))
    benign_feature: BenignFeature | None = Field(default=None, strict=False, description=(
        "Benign calcification pattern or fat: category 1."))
    additional_suspicious_features: StrictBool = Field(default=False, description=(
        "Additional features or imaging findings that increase suspicion for lung cancer (3/4 → 4X)."))
    proven_benign: StrictBool = Field(default=False, description=(
        "A 4B lesion proven benign after diagnostic work-up (→ 2)."))
    priors: list[PriorMeasurement] = Field(default_factory=list, max_length=50, description=(
        "Earlier measurements of this nodule (existing nodules: at least one)."))

    @model_validator(mode="after")
    def _consistent(self) -> ParenchymalNodule:
        self._check_size()
        self._check_status()
        if self.composition == "part_solid" and self.solid_component is None:
            raise field_error("solid_component", "required for a part-solid nodule")
        if self.composition != "part_solid" and self.solid_component is not None:
            raise field_error("solid_component", "only for a part-solid nodule")
        if self.solid_component is not None:
            solid, total = self.solid_component.mean_mm, self.mean_mm
            if solid is not None and total is not None and solid > total:
                raise field_error("solid_component", "must not be larger than the whole nodule")
        if self.status == "existing" and not self.priors:
            raise field_error("priors", "an existing nodule needs at least one prior measurement")
        if self.status != "existing" and self.priors:
            raise field_error("priors", "only for existing nodules")
        for i, prior in enumerate(self.priors):
            if prior.mean_mm is None:
                raise field_error(f"priors.{i}.long_axis_mm",
                                  "give long_axis_mm and short_axis_mm, or mean_diameter_mm")
            if (prior.composition or self.composition) == "part_solid" and prior.solid_component is None:
                raise field_error(f"priors.{i}.solid_component", "required for a part-solid nodule")
        if len({p.interval_days for p in self.priors}) != len(self.priors):
            raise field_error("priors", "two priors with the same interval_days")
        return self

    @property
    def solid_mean_mm(self) -> Decimal | None:
        return None if self.solid_component is None else self.solid_component.mean_mm


class AirwayNodule(_Finding):
    """An airway (endobronchial) nodule."""

    finding: Literal["airway_nodule"]
    level: Literal["subsegmental", "segmental_or_proximal"] = Field(description=(
        "subsegmental | segmental_or_proximal (segmental or more proximal)."))
    change: Literal["stable", "growing", "decreased"] | None = Field(default=None, description=(
        "Change since the prior exam (required for existing airway nodules)."))

    @model_validator(mode="after")
    def _consistent(self) -> AirwayNodule:
        self._check_status()
        if self.status == "existing" and self.change is None:
            raise field_error("change", "required for an existing airway nodule")
        if self.status != "existing" and self.change is not None:
            raise field_error("change", "only for existing airway nodules")
        return self


class AtypicalCyst(_Finding):
    """An atypical pulmonary cyst. Thin-walled (uniform wall < 2 mm) unilocular cysts are benign and not
    categorised."""

    finding: Literal["atypical_cyst"]
    wall: Literal["thin", "thick"] = Field(description="thin (< 2 mm, uniform) | thick (>= 2 mm or nodular).")
    multilocular: StrictBool = Field(default=False, description="Multilocular now.")
    growing_cystic_component: StrictBool = Field(default=False, description=(
        "Cystic component grew (mean diameter) since the prior exam."))
    growing_wall_thickness_or_nodularity: StrictBool = Field(default=False, description=(
        "Wall thickness or nodularity grew since the prior exam."))
    became_multilocular: StrictBool = Field(default=False, description=(
        "Unilocular on the prior exam, multilocular now."))
    increased_loculation: StrictBool = Field(default=False, description="More loculations than before.")
    new_or_increased_opacity: StrictBool = Field(default=False, description=(
        "New or increased opacity (nodular, ground-glass or consolidation)."))

    @model_validator(mode="after")
    def _consistent(self) -> AtypicalCyst:
        self._check_status()
        changes = ("growing_cystic_component", "growing_wall_thickness_or_nodularity", "became_multilocular",
                   "increased_loculation", "new_or_increased_opacity")
        if self.status != "existing":
            for name in changes:
                if getattr(self, name):
                    raise field_error(name, "only for existing cysts (a change since the prior exam)")
        if self.became_multilocular and not self.multilocular:
            raise field_error("multilocular", "must be true when became_multilocular is true")
        if self.increased_loculation and not self.multilocular:
            raise field_error("increased_loculation", "only for multilocular cysts")
        return self


def _finding_kind(value: object) -> str:
    """The ``finding`` tag; a finding without one is a lung nodule."""
    if isinstance(value, dict):
        return str(value.get("finding", "nodule"))
    return str(getattr(value, "finding", "nodule"))


Finding = Annotated[Annotated[ParenchymalNodule, Tag("nodule")] | Annotated[AirwayNodule, Tag("airway_nodule")]
                    | Annotated[AtypicalCyst, Tag("atypical_cyst")], Discriminator(_finding_kind)]


class LungRadsInput(CalculatorInput):
    """One lung-cancer screening LDCT exam."""

    findings: list[Finding] = Field(default_factory=list, max_length=200, description=(
        "Nodules, airway nodules and atypical cysts; empty when there are none."))
    prior_ct_being_located: StrictBool = Field(default=False, description=(
        "A prior chest CT is being located for comparison (category 0)."))
    lungs_not_fully_evaluable: StrictBool = Field(default=False, description=(
        "Part or all of the lungs cannot be evaluated (category 0)."))
    infectious_or_inflammatory_findings: StrictBool = Field(default=False, description=(
        "Findings suggestive of an infectious or inflammatory process, e.g. segmental or lobar consolidation, "
        "more than six new nodules, large (>= 8 mm) solid nodules appearing in a short interval, new nodules "
        "in an immunocompromised person (category 0, LDCT in 1-3 months). Leave false when a new nodule is more "
        "concerning for cancer and meets 4B size criteria: it may be called 4B (ACR note)."))
    significant_other_findings: StrictBool = Field(default=False, description=(
        "Clinically significant or potentially significant findings other than lung cancer (S modifier)."))

    @model_validator(mode="after")
    def _one_kind_of_exam(self) -> LungRadsInput:
        statuses = {f.status for f in self.findings}
        if "baseline" in statuses and statuses - {"baseline"}:
            index = next(i for i, f in enumerate(self.findings) if f.status != "baseline")
            raise field_error(f"findings.{index}.status", "a baseline exam holds only baseline findings; "
                              "a follow-up exam holds new and existing ones")
        return self
