"""Fleischner Society 2017 guidelines for incidental pulmonary nodules (MacMahon H et al., Radiology
2017;284:228-243).

Source: shared/reference/clinical-models.md §4 (confirmed in World J Radiol 2017;9:304 Tables 1-4,
Radiopaedia and a UW radiology page). Not the obsolete 2005 bands (< 4, 4-6, 6-8, > 8 mm).

Scope: incidental nodules in adults aged 35 or more. The guideline does not apply to lung-cancer screening,
immunocompromised patients or patients with a known primary cancer; the calculator abstains with the reason.

Size: the average of the long and short axes, rounded to the nearest millimetre (Bankier AA et al., Radiology
2017;285:584-600), ties rounded up (decimal arithmetic). Bands: solid < 6 mm, 6-8 mm, > 8 mm (after
rounding: <= 5, 6-8, >= 9); subsolid < 6 mm and >= 6 mm. A volume may be given instead: solid < 100,
100-250, > 250 mm³; subsolid < 100, >= 100 mm³.

Single or multiple: counted per kind, as the guideline's tables are: a solid nodule is "multiple" when the
exam has more than one solid nodule, a subsolid one when it has more than one subsolid (ground-glass or
part-solid) nodule.

Follow-up steps carry (min_months, max_months) so callers can compute due windows: the first step counts
from this exam; later steps count from this exam too unless ``relative_to`` is ``previous_step`` (the
every-2-years and annual surveillance). With several nodules the governing one is the nodule whose
recommendation is the most intensive (``intensity``; ties go to the larger nodule).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator

from risk.guidelines._common import WHOLE, CalculatorInput, field_error, mean_of_axes, round_half_up, to_decimal
from risk.guidelines.result import ModelOutputs, ModelResult, abstained, scored

MIN_AGE_YEARS = 35.0  # MacMahon 2017: adults >= 35 years
SOLID_SMALL_BELOW_MM = 6  # < 6 mm
SOLID_LARGE_ABOVE_MM = 8  # > 8 mm
SUBSOLID_CUT_MM = 6  # < 6 / >= 6 mm
VOLUME_SMALL_BELOW_MM3 = 100.0  # < 100 mm³
VOLUME_LARGE_ABOVE_MM3 = 250.0  # > 250 mm³

MODEL_NAME = "fleischner"
MODEL_VERSION = "2017"
CITATION = ("MacMahon H, Naidich DP, Goo JM, et al. Guidelines for management of incidental pulmonary nodules "
            "detected on CT images: from the Fleischner Society 2017. Radiology 2017;284:228-243; measurement: "
            "Bankier AA et al. Radiology 2017;285:584-600.")

Kind = Literal["solid", "part_solid", "ground_glass"]
SizeBand = Literal["<6", "6-8", ">8", ">=6"]


class FleischnerNodule(CalculatorInput):
    """One incidental nodule: its kind and size (two axes, a mean diameter or a volume)."""

    id: Annotated[str | None, Field(max_length=200, description="Caller's label.")] = None
    composition: Kind = Field(description="solid | part_solid | ground_glass.")
    long_axis_mm: Annotated[float | None, Field(gt=0, le=300, description="Long axis, mm.")] = None
    short_axis_mm: Annotated[float | None, Field(gt=0, le=300, description="Short axis, mm.")] = None
    mean_diameter_mm: Annotated[float | None, Field(gt=0, le=300, description=(
        "Average diameter, mm, instead of the axes."))] = None
    volume_mm3: Annotated[float | None, Field(gt=0, le=1e7, description=(
        "Volume, mm³, instead of diameters."))] = None
    solid_component_mm: Annotated[float | None, Field(gt=0, le=300, description=(
        "Part-solid nodules: the solid component's average diameter, mm (for the notes)."))] = None

    @model_validator(mode="after")
    def _size(self) -> FleischnerNodule:
        given = [n for n in ("mean_diameter_mm", "volume_mm3") if getattr(self, n) is not None]
        if self.long_axis_mm is not None or self.short_axis_mm is not None:
            if self.long_axis_mm is None or self.short_axis_mm is None:
                raise field_error("short_axis_mm" if self.short_axis_mm is None else "long_axis_mm",
                                  "required with its pair")
            if self.short_axis_mm > self.long_axis_mm:
                raise field_error("short_axis_mm", "must not exceed long_axis_mm")
            given.insert(0, "long_axis_mm")
        if not given:
            raise field_error("long_axis_mm", "give long_axis_mm and short_axis_mm, mean_diameter_mm or volume_mm3")
        if len(given) > 1:
            raise field_error(given[1], "give only one size: the two axes, mean_diameter_mm or volume_mm3")
        if self.solid_component_mm is not None and self.composition != "part_solid":
            raise field_error("solid_component_mm", "only for part-solid nodules")
        return self

    @property
    def size_mm(self) -> int | None:
        """Average diameter rounded to the nearest mm (half up); None when only a volume was given."""
        if self.long_axis_mm is not None and self.short_axis_mm is not None:
            return int(mean_of_axes(self.long_axis_mm, self.short_axis_mm, WHOLE))
        if self.mean_diameter_mm is not None:
            return int(round_half_up(to_decimal(self.mean_diameter_mm), WHOLE))
        return None

    @property
    def subsolid(self) -> bool:
        return self.composition != "solid"


class FleischnerInput(CalculatorInput):
    """The patient's context and the incidental nodules on one CT."""

    age: Annotated[float, Field(ge=0, le=120, description="Age in years (the guideline covers >= 35).")]
    risk: Literal["low", "high"] | None = Field(default=None, description=(
        "Patient's lung-cancer risk as the guideline uses it (ACCP factors: smoking, exposures, age, family "
        "history, emphysema, fibrosis, upper lobe...); required when any nodule is solid."))
    screening: StrictBool = Field(default=False, description="Found on lung-cancer screening (out of scope).")
    immunocompromised: StrictBool = Field(default=False, description="Immunocompromised patient (out of scope).")
    known_primary_cancer: StrictBool = Field(default=False, description="Known primary cancer (out of scope).")
    nodules: list[FleischnerNodule] = Field(min_length=1, max_length=200, description="The incidental nodules.")

    @model_validator(mode="after")
    def _risk_for_solid(self) -> FleischnerInput:
        if self.risk is None and any(n.composition == "solid" for n in self.nodules):
            raise field_error("risk", "required (low or high) when a nodule is solid")
        return self


class FollowUpStep(ModelOutputs):
    min_months: int = Field(ge=0)
    max_months: int = Field(ge=0)
    optional: bool = Field(description="'consider' / 'optional' in the guideline.")
    relative_to: Literal["this_exam", "previous_step"] = "this_exam"
    description: str


class NoduleRecommendation(ModelOutputs):
    index: int
    id: str | None = None
    composition: Kind
    size_mm: int | None = Field(description="Average diameter rounded to the nearest mm (null: volume given).")
    volume_mm3: float | None = None
    size_band: SizeBand
    row: str = Field(description="The guideline row applied.")
    recommendation: str
    follow_up: tuple[FollowUpStep, ...]
    intensity: int = Field(description="How intensive the recommendation is (0 none ... 6 most).")
    notes: tuple[str, ...] = ()


class FleischnerOutputs(ModelOutputs):
    recommendation: str = Field(description="The governing nodule's recommendation.")
    follow_up: tuple[FollowUpStep, ...]
    next_follow_up_months: tuple[int, int] | None = Field(description=(
        "The first follow-up step's (min, max) months from this exam; null when no follow-up is recommended."))
    next_follow_up_optional: bool | None
    governing_nodule_index: int
    nodules: tuple[NoduleRecommendation, ...]


FleischnerResult = ModelResult[FleischnerOutputs]


def _step(lo: int, hi: int, text: str, *, optional: bool = False,
          relative_to: Literal["this_exam", "previous_step"] = "this_exam") -> FollowUpStep:
    return FollowUpStep(min_months=lo, max_months=hi, optional=optional, relative_to=relative_to, description=text)


_Row = tuple[str, tuple[FollowUpStep, ...], int]
_NONE: _Row = ("No routine follow-up.", (), 0)
_OPTIONAL_12: _Row = ("Optional CT at 12 months.", (_step(12, 12, "optional CT", optional=True),), 1)
_LARGE_SINGLE: _Row = ("Consider CT at 3 months, PET/CT, or tissue sampling.",
                       (_step(3, 3, "consider CT at 3 months (or PET/CT, or tissue sampling)", optional=True),), 6)

SOLID_TABLE: dict[tuple[bool, str, str], _Row] = {
    # (multiple, risk, band)
    (False, "low", "<6"): _NONE,
    (False, "low", "6-8"): ("CT at 6-12 months, then consider CT at 18-24 months.",
                            (_step(6, 12, "CT"), _step(18, 24, "consider CT", optional=True)), 3),
    (False, "low", ">8"): _LARGE_SINGLE,
    (False, "high", "<6"): _OPTIONAL_12,
    (False, "high", "6-8"): ("CT at 6-12 months, then CT at 18-24 months.",
                             (_step(6, 12, "CT"), _step(18, 24, "CT")), 3),
    (False, "high", ">8"): _LARGE_SINGLE,
    (True, "low", "<6"): _NONE,
    (True, "low", "6-8"): ("CT at 3-6 months, then consider CT at 18-24 months.",
                           (_step(3, 6, "CT"), _step(18, 24, "consider CT", optional=True)), 4),
    (True, "low", ">8"): ("CT at 3-6 months, then consider CT at 18-24 months.",
                          (_step(3, 6, "CT"), _step(18, 24, "consider CT", optional=True)), 4),
    (True, "high", "<6"): _OPTIONAL_12,
    (True, "high", "6-8"): ("CT at 3-6 months, then CT at 18-24 months.",
                            (_step(3, 6, "CT"), _step(18, 24, "CT")), 4),
    (True, "high", ">8"): ("CT at 3-6 months, then CT at 18-24 months.",
                           (_step(3, 6, "CT"), _step(18, 24, "CT")), 4),
}
SUBSOLID_TABLE: dict[tuple[bool, str, str], _Row] = {
    # (multiple, kind, band); kind is ignored for multiple subsolid nodules
    (False, "ground_glass", "<6"): _NONE,
    (False, "ground_glass", ">=6"): ("CT at 6-12 months to confirm persistence, then CT every 2 years until 5 "
                                     "years.", (_step(6, 12, "CT to confirm persistence"),
                                                _step(24, 24, "CT every 2 years until 5 years",
                                                      relative_to="previous_step")), 2),
    (False, "part_solid", "<6"): _NONE,
    (False, "part_solid", ">=6"): ("CT at 3-6 months to confirm persistence. If unchanged and the solid "
                                   "component remains < 6 mm, annual CT for 5 years.",
                                   (_step(3, 6, "CT to confirm persistence"),
                                    _step(12, 12, "if unchanged and solid component < 6 mm: annual CT for 5 years",
                                          relative_to="previous_step")), 4),
    (True, "subsolid", "<6"): ("CT at 3-6 months. If stable, consider CT at 2 and 4 years.",
                               (_step(3, 6, "CT"), _step(24, 24, "if stable, consider CT at 2 years", optional=True),
                                _step(48, 48, "if stable, consider CT at 4 years", optional=True)), 4),
    (True, "subsolid", ">=6"): ("CT at 3-6 months. Subsequent management based on the most suspicious "
                                "nodule(s).", (_step(3, 6, "CT"),), 5),
}

NOTES = {
    ("solid", "<6", "high"): "Nodules with suspicious morphology, upper-lobe location, or both may warrant 12-month "
                             "follow-up.",
    ("ground_glass", "<6", "single"): "In certain suspicious nodules < 6 mm, consider follow-up at 2 and 4 years; "
                                      "if a solid component or growth develops, consider resection.",
    ("part_solid", "<6", "single"): "Part-solid nodules cannot be defined as such until >= 6 mm; nodules < 6 mm "
                                    "do not usually require follow-up.",
    ("part_solid", ">=6", "single"): "Persistent part-solid nodules with solid components >= 6 mm should be "
                                     "considered highly suspicious.",
}


def solid_band(size_mm: int | None, volume_mm3: float | None) -> SizeBand:
    if size_mm is not None:
        if size_mm < SOLID_SMALL_BELOW_MM:
            return "<6"
        return "6-8" if size_mm <= SOLID_LARGE_ABOVE_MM else ">8"
    assert volume_mm3 is not None
    if volume_mm3 < VOLUME_SMALL_BELOW_MM3:
        return "<6"
    return "6-8" if volume_mm3 <= VOLUME_LARGE_ABOVE_MM3 else ">8"


def subsolid_band(size_mm: int | None, volume_mm3: float | None) -> SizeBand:
    if size_mm is not None:
        return "<6" if size_mm < SUBSOLID_CUT_MM else ">=6"
    assert volume_mm3 is not None
    return "<6" if volume_mm3 < VOLUME_SMALL_BELOW_MM3 else ">=6"


def recommend(nodule: FleischnerNodule, *, index: int, multiple: bool, risk: str | None) -> NoduleRecommendation:
    """The row for one nodule, given whether it is one of several of its kind."""
    size, volume = nodule.size_mm, nodule.volume_mm3
    notes: list[str] = []
    if nodule.composition == "solid":
        assert risk is not None
        band = solid_band(size, volume)
        text, steps, intensity = SOLID_TABLE[(multiple, risk, band)]
        row = f"{'multiple' if multiple else 'single'} solid, {risk} risk, {band} mm"
        if note := NOTES.get(("solid", band, risk)):
            notes.append(note)
    else:
        band = subsolid_band(size, volume)
        key = (True, "subsolid", band) if multiple else (False, nodule.composition, band)
        text, steps, intensity = SUBSOLID_TABLE[key]
        kind = "subsolid" if multiple else nodule.composition.replace("_", "-")
        row = f"{'multiple' if multiple else 'single'} {kind}, {band} mm"
        if note := NOTES.get((nodule.composition, band, "multiple" if multiple else "single")):
            notes.append(note)
        if (nodule.composition == "part_solid" and nodule.solid_component_mm is not None
                and nodule.solid_component_mm >= SUBSOLID_CUT_MM):
            notes.append("Solid component >= 6 mm: highly suspicious if persistent.")
    return NoduleRecommendation(index=index, id=nodule.id, composition=nodule.composition, size_mm=size,
                                volume_mm3=volume, size_band=band, row=row, recommendation=text, follow_up=steps,
                                intensity=intensity, notes=tuple(notes))


def out_of_scope_reasons(data: FleischnerInput) -> list[str]:
    reasons = []
    if data.age < MIN_AGE_YEARS:
        reasons.append(f"age {data.age:g} is under 35: the Fleischner 2017 guidelines cover adults aged 35 or more")
    if data.screening:
        reasons.append("found on lung-cancer screening: use Lung-RADS, not Fleischner")
    if data.immunocompromised:
        reasons.append("immunocompromised patient: the Fleischner 2017 guidelines do not apply")
    if data.known_primary_cancer:
        reasons.append("known primary cancer: the Fleischner 2017 guidelines do not apply")
    return reasons


def compute_fleischner(data: FleischnerInput) -> FleischnerResult:
    """Fleischner 2017 recommendation for the exam's incidental nodules, or an abstention out of scope."""
    if reasons := out_of_scope_reasons(data):
        return abstained(FleischnerResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION,
                         inputs=data, reasons=reasons)
    solid_count = sum(1 for n in data.nodules if not n.subsolid)
    subsolid_count = len(data.nodules) - solid_count
    recs = tuple(recommend(n, index=i, multiple=(subsolid_count if n.subsolid else solid_count) > 1, risk=data.risk)
                 for i, n in enumerate(data.nodules))
    governing = max(recs, key=lambda r: (r.intensity, _size_key(r)))
    first = governing.follow_up[0] if governing.follow_up else None
    outputs = FleischnerOutputs(
        recommendation=governing.recommendation, follow_up=governing.follow_up,
        next_follow_up_months=(first.min_months, first.max_months) if first else None,
        next_follow_up_optional=first.optional if first else None, governing_nodule_index=governing.index,
        nodules=recs)
    return scored(FleischnerResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=outputs)


def _size_key(r: NoduleRecommendation) -> float:
    """Diameter for tie-breaking (a volume's sphere-equivalent diameter)."""
    if r.size_mm is not None:
        return float(r.size_mm)
    assert r.volume_mm3 is not None
    return (r.volume_mm3 * 6.0 / math.pi) ** (1.0 / 3.0)
