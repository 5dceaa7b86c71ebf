"""ACR Lung-RADS v2022: the category of each finding and of the exam, with management and follow-up interval.

Source: shared/reference/clinical-models.md §3 (table text from RadElement set RDES267; management from
ACR / Christensen J et al., CHEST 2024;165:738-753). Inputs: :mod:`risk.guidelines.lungrads_inputs`.
The rules below are each named in the finding's ``rule`` output; README.md in this package lists them.

Measurement and growth (v2022 notes):

* Mean diameter to one decimal, decimal arithmetic, half up (see lungrads_inputs).
* Growth: mean diameter up by **more than 1.5 mm within 12 months** (exactly 1.5 mm is not growth). Each prior
  measured within the last 365 days is compared with now. When no prior is that recent (a late annual exam),
  the increase since the most recent prior is pro-rated to 12 months (``increase × 365 / interval_days``):
  our reading of "within a 12-month interval", documented and tested.
* What grows: a solid nodule's mean diameter; a part-solid nodule's solid component (a solid component that
  appears in a non-solid nodule is "new"); a non-solid nodule's mean diameter.
* Slow growth (4B): a solid or part-solid nodule that does not meet the growth definition but has grown by
  more than 1.5 mm in total since the earliest of at least two priors (growth over multiple exams; for
  part-solid nodules the total or the solid component).
* Size thresholds apply at first detection and when a nodule enlarges into a higher size category: a stable
  nodule whose size now falls in a higher baseline size category than at the last exam is reclassified by
  size even though it did not meet the growth definition.
* Stepped management for stable or decreased findings: 3 → 2; 4A → 3 (not airway nodules); airway
  (segmental or more proximal) 4A persisting → 4B; 4B or 4X stay (4B proven benign → 2). Without
  ``prior_category`` the prior category is inferred from the prior measurement's size category at baseline
  (a warning says so): this can be more suspicious than the category actually assigned then.

Reading of overlapping rows (documented choices): a new part-solid nodule < 6 mm total is 3 whatever its
solid component (otherwise the 3 row could never apply); a new or growing part-solid nodule >= 6 mm total is
4A with a solid component < 4 mm and 4B with >= 4 mm. A growing non-solid nodule >= 30 mm is not in the
table; it is given 3 (the size threshold of the baseline/new row) with a warning. Growing subsegmental airway
nodules, decreased segmental airway nodules and changing thin-walled unilocular cysts are not in the table:
the finding abstains, and so does the exam (unless it is category 0).

Exam category: 0 when a prior CT is being located, the lungs are not fully evaluable, or the findings suggest
infection or inflammation; otherwise the most suspicious finding's category (1 with no categorised finding).
The S modifier is reported separately and in ``category_with_modifier`` (e.g. "2S").
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import Field

from risk.guidelines.lungrads_inputs import (
    AirwayNodule,
    AtypicalCyst,
    Composition,
    LungRadsCategory,
    LungRadsInput,
    ParenchymalNodule,
    PriorMeasurement,
)
from risk.guidelines.result import ModelOutputs, ModelResult, abstained, scored

C0, C1, C2, C3, C4A, C4B, C4X = (LungRadsCategory.C0, LungRadsCategory.C1, LungRadsCategory.C2,
                                 LungRadsCategory.C3, LungRadsCategory.C4A, LungRadsCategory.C4B,
                                 LungRadsCategory.C4X)

GROWTH_THRESHOLD_MM = Decimal("1.5")  # v2022 notes: growth is an increase of > 1.5 mm in mean diameter
GROWTH_WINDOW_DAYS = 365  # "within a 12-month interval"

# Size thresholds (mean diameter, mm), RDES267 table.
SOLID_BASELINE_MM = (Decimal(6), Decimal(8), Decimal(15))  # 2 | 3 | 4A | 4B
SOLID_NEW_MM = (Decimal(4), Decimal(6), Decimal(8))  # 2 | 3 | 4A | 4B
PART_SOLID_TOTAL_MM = Decimal(6)  # total mean diameter: < 6 is 2 at baseline, 3 when new
PART_SOLID_COMPONENT_BASELINE_MM = (Decimal(6), Decimal(8))  # solid component: 3 | 4A | 4B
PART_SOLID_COMPONENT_NEW_MM = Decimal(4)  # new or growing solid component: < 4 is 4A, >= 4 is 4B
NONSOLID_MM = Decimal(30)  # < 30 is 2, >= 30 is 3 at baseline or new
JUXTAPLEURAL_MM = Decimal(10)  # juxtapleural solid nodule < 10 mm with benign morphology is 2
PET_CT_SOLID_MM = Decimal(8)

MODEL_NAME = "lungrads"
MODEL_VERSION = "v2022"
CITATION = ("American College of Radiology. Lung-RADS v2022 (November 2022), table text as in RadElement set "
            "RDES267; Christensen J, Prosper AE, Wu CC, et al. ACR Lung-RADS v2022: assessment categories and "
            "management recommendations. CHEST 2024;165(3):738-753.")

DESCRIPTORS = {
    C0: "Incomplete", C1: "Negative", C2: "Benign: based on imaging features or indolent behaviour",
    C3: "Probably benign", C4A: "Suspicious", C4B: "Very suspicious", C4X: "Very suspicious",
}
MALIGNANCY_PROBABILITY = {C1: "< 1%", C2: "< 1%", C3: "1-2%", C4A: "5-15%", C4B: "> 15%", C4X: "> 15%"}
_PET_CT = "PET/CT may be considered if there is a >= 8 mm (>= 268 mm³) solid nodule or solid component"
_4B_MANAGEMENT = ("Referral for further clinical evaluation: diagnostic chest CT with or without contrast; "
                  f"{_PET_CT}; tissue sampling. Management depends on clinical evaluation, patient preference "
                  "and the probability of malignancy.")
MANAGEMENT: dict[LungRadsCategory, tuple[str, tuple[int, int] | None]] = {
    C1: ("Continue annual screening with LDCT in 12 months.", (12, 12)),
    C2: ("Continue annual screening with LDCT in 12 months.", (12, 12)),
    C3: ("6-month LDCT.", (6, 6)),
    C4A: (f"3-month LDCT; {_PET_CT}.", (3, 3)),
    C4B: (_4B_MANAGEMENT, None),
    C4X: (_4B_MANAGEMENT, None),
}
MANAGEMENT_INCOMPLETE = ("Additional lung cancer screening CT images and/or comparison to prior chest CT "
                         "examinations is needed.")
MANAGEMENT_INFECTIOUS = ("LDCT in 1-3 months; then a new Lung-RADS category and management based on the most "
                         "suspicious nodule.")
AIRWAY_4B_MANAGEMENT = "For an airway nodule: clinical evaluation, typically bronchoscopy."

Change = Literal["growing", "new_solid_component", "slow_growth", "stable_or_decreased"]


class FindingAssessment(ModelOutputs):
    """The category of one finding and the table row that gave it."""

    index: int = Field(ge=0, description="Position in the input's findings.")
    id: str | None = None
    finding: str
    category: LungRadsCategory | None = Field(description=(
        "null when the finding is not categorised (benign thin-walled cyst) or could not be (abstention)."))
    rule: str = Field(description="The Lung-RADS row or note applied.")
    mean_diameter_mm: float | None = None
    solid_component_mean_diameter_mm: float | None = None
    change: Change | None = None
    abstention: str | None = None


class LungRadsOutputs(ModelOutputs):
    category: LungRadsCategory = Field(description="Exam category (the most suspicious finding's, or 0).")
    s_modifier: bool
    category_with_modifier: str = Field(description="Category as reported, with S appended when present.")
    descriptor: str
    management: str
    follow_up_interval_months: tuple[int, int] | None = Field(description=(
        "Next LDCT from this exam, as (min, max) months; null when the next step is not a timed LDCT."))
    malignancy_probability: str | None
    incomplete_reasons: tuple[str, ...] = ()
    governing_finding_index: int | None = Field(description="Index of the most suspicious finding.")
    findings: tuple[FindingAssessment, ...]


LungRadsResult = ModelResult[LungRadsOutputs]


@dataclass(frozen=True, slots=True)
class _Call:
    category: LungRadsCategory | None
    rule: str
    change: Change | None = None
    abstention: str | None = None
    warning: str | None = None


# ---- size tables ----

def _banded(value: Decimal, cuts: tuple[Decimal, ...], cats: tuple[LungRadsCategory, ...]) -> LungRadsCategory:
    for cut, cat in zip(cuts, cats, strict=False):
        if value < cut:
            return cat
    return cats[-1]


def baseline_size_category(composition: Composition, mean_mm: Decimal, solid_mm: Decimal | None) -> _Call:
    """The baseline row for a nodule of this size."""
    if composition == "solid":
        cat = _banded(mean_mm, SOLID_BASELINE_MM, (C2, C3, C4A, C4B))
        return _Call(cat, {C2: "solid < 6 mm at baseline", C3: "solid >= 6 to < 8 mm at baseline",
                           C4A: "solid >= 8 to < 15 mm at baseline", C4B: "solid >= 15 mm at baseline"}[cat])
    if composition == "part_solid":
        if mean_mm < PART_SOLID_TOTAL_MM:
            return _Call(C2, "part-solid < 6 mm total mean diameter at baseline")
        assert solid_mm is not None
        cat = _banded(solid_mm, PART_SOLID_COMPONENT_BASELINE_MM, (C3, C4A, C4B))
        return _Call(cat, {C3: "part-solid >= 6 mm total with solid component < 6 mm at baseline",
                           C4A: "part-solid with solid component >= 6 to < 8 mm at baseline",
                           C4B: "part-solid with solid component >= 8 mm at baseline"}[cat])
    if mean_mm < NONSOLID_MM:
        return _Call(C2, "non-solid < 30 mm at baseline")
    return _Call(C3, "non-solid >= 30 mm at baseline")


def new_size_category(composition: Composition, mean_mm: Decimal, solid_mm: Decimal | None) -> _Call:
    """The row for a nodule new since the prior exam."""
    if composition == "solid":
        cat = _banded(mean_mm, SOLID_NEW_MM, (C2, C3, C4A, C4B))
        return _Call(cat, {C2: "new solid < 4 mm", C3: "new solid 4 to < 6 mm", C4A: "new solid 6 to < 8 mm",
                           C4B: "new solid >= 8 mm"}[cat])
    if composition == "part_solid":
        if mean_mm < PART_SOLID_TOTAL_MM:
            return _Call(C3, "new part-solid < 6 mm total mean diameter")
        assert solid_mm is not None
        if solid_mm < PART_SOLID_COMPONENT_NEW_MM:
            return _Call(C4A, "new part-solid with solid component < 4 mm")
        return _Call(C4B, "new part-solid with solid component >= 4 mm")
    if mean_mm < NONSOLID_MM:
        return _Call(C2, "new non-solid < 30 mm")
    return _Call(C3, "new non-solid >= 30 mm")


# ---- growth ----

def _solid_extent(composition: Composition, mean_mm: Decimal, solid_mm: Decimal | None) -> Decimal:
    """How much of the nodule is solid: all of a solid nodule, the component of a part-solid one, none of a
    non-solid one."""
    if composition == "solid":
        return mean_mm
    if composition == "part_solid":
        assert solid_mm is not None
        return solid_mm
    return Decimal(0)


def _prior_values(nodule: ParenchymalNodule, prior: PriorMeasurement) -> tuple[Composition, Decimal, Decimal | None]:
    composition = prior.composition or nodule.composition
    mean = prior.mean_mm
    assert mean is not None
    solid = prior.solid_component.mean_mm if prior.solid_component is not None else None
    return composition, mean, solid


def grew(now_mm: Decimal, priors: list[tuple[float, Decimal]]) -> bool:
    """Growth by the v2022 definition: > 1.5 mm within 12 months (pro-rated when no prior is that recent)."""
    recent = [(days, v) for days, v in priors if days <= GROWTH_WINDOW_DAYS]
    if recent:
        return any(now_mm - v > GROWTH_THRESHOLD_MM for _, v in recent)
    days, v = min(priors, key=lambda p: p[0])
    return (now_mm - v) * Decimal(GROWTH_WINDOW_DAYS) / Decimal(repr(float(days))) > GROWTH_THRESHOLD_MM


def _slowly_grew(now_mm: Decimal, priors: list[tuple[float, Decimal]]) -> bool:
    if len(priors) < 2:
        return False
    _, earliest = max(priors, key=lambda p: p[0])
    return now_mm - earliest > GROWTH_THRESHOLD_MM


def _stepped(prior: LungRadsCategory) -> tuple[LungRadsCategory, str]:
    if prior in (C0, C1, C2):
        return C2, f"stable or decreased; prior category {prior.value}"
    if prior is C3:
        return C2, "category 3 stable or decreased at follow-up (stepped management → 2)"
    if prior is C4A:
        return C3, "category 4A stable or decreased at follow-up (stepped management → 3)"
    return prior, f"category {prior.value} stable: remains {prior.value} pending work-up (→ 2 only when proven benign)"


# ---- findings ----

def assess_nodule(n: ParenchymalNodule) -> _Call:
    """Category of a lung nodule (solid, part-solid, non-solid; juxtapleural or not)."""
    mean, solid = n.mean_mm, n.solid_mean_mm
    assert mean is not None
    if n.benign_feature is not None:
        return _Call(C1, f"benign feature ({n.benign_feature.value.replace('_', ' ')})")
    if n.status in ("baseline", "new"):
        if (n.juxtapleural and n.composition == "solid" and mean < JUXTAPLEURAL_MM and n.smooth_margins
                and n.shape in ("oval", "lentiform", "triangular")):
            call = _Call(C2, f"juxtapleural solid < 10 mm, smooth margins, {n.shape}, at {n.status}")
        elif n.status == "baseline":
            call = baseline_size_category(n.composition, mean, solid)
        else:
            call = new_size_category(n.composition, mean, solid)
    else:
        call = _assess_existing(n, mean, solid)
    if n.proven_benign and call.change not in ("growing", "new_solid_component", "slow_growth"):
        return _Call(C2, "category 4B lesion proven benign after diagnostic work-up", call.change)
    if n.additional_suspicious_features and call.category in (C3, C4A, C4B):
        return _Call(C4X, f"{call.rule}; additional features increasing suspicion (→ 4X)", call.change,
                     warning=call.warning)
    return call


def _assess_existing(n: ParenchymalNodule, mean: Decimal, solid: Decimal | None) -> _Call:
    priors = sorted(n.priors, key=lambda p: p.interval_days)
    values = [(p.interval_days, *_prior_values(n, p)) for p in priors]
    comp = n.composition
    latest_comp, latest_mean, latest_solid = values[0][1:]
    if comp == "part_solid":
        assert solid is not None
        if latest_comp == "nonsolid":
            cat = C4A if solid < PART_SOLID_COMPONENT_NEW_MM else C4B
            return _Call(cat, f"part-solid with new solid component {'<' if cat is C4A else '>='} 4 mm",
                         "new_solid_component")
        extent_priors = [(d, _solid_extent(c, m, s)) for d, c, m, s in values]
        if grew(solid, extent_priors):
            cat = C4A if solid < PART_SOLID_COMPONENT_NEW_MM else C4B
            return _Call(cat, f"part-solid with growing solid component {'<' if cat is C4A else '>='} 4 mm",
                         "growing")
        total_priors = [(d, m) for d, _, m, _ in values]
        if _slowly_grew(solid, extent_priors) or _slowly_grew(mean, total_priors):
            return _Call(C4B, "slow-growing part-solid nodule (growth over multiple screening exams)", "slow_growth")
    elif comp == "solid":
        extent_priors = [(d, _solid_extent(c, m, s)) for d, c, m, s in values]
        if grew(mean, extent_priors):
            cat = C4A if mean < SOLID_NEW_MM[2] else C4B
            return _Call(cat, f"growing solid {'<' if cat is C4A else '>='} 8 mm", "growing")
        if _slowly_grew(mean, extent_priors):
            return _Call(C4B, "slow-growing solid nodule (growth over multiple screening exams)", "slow_growth")
    else:
        mean_priors = [(d, m) for d, _, m, _ in values]
        if grew(mean, mean_priors):
            if mean < NONSOLID_MM:
                return _Call(C2, "growing non-solid < 30 mm", "growing")
            return _Call(C3, "growing non-solid >= 30 mm (not a row of the table: given the >= 30 mm size "
                         "threshold of the baseline/new row)", "growing",
                         warning="a growing non-solid nodule >= 30 mm is not a row of the Lung-RADS v2022 table; "
                                 "categorised 3 by its size threshold")
    # Stable or decreased (or a slowly growing non-solid nodule).
    warning = None
    if n.prior_category is not None:
        stepped, rule = _stepped(n.prior_category)
    else:
        inferred = baseline_size_category(latest_comp, latest_mean, latest_solid)
        assert inferred.category is not None
        stepped, rule = _stepped(inferred.category)
        warning = (f"prior_category not given for an existing nodule: inferred {inferred.category.value} from the "
                   "prior measurement's size; give prior_category for exact stepped management")
    now = baseline_size_category(comp, mean, solid)
    before = baseline_size_category(latest_comp, latest_mean, latest_solid)
    assert now.category is not None and before.category is not None
    if now.category.rank > before.category.rank and now.category.rank > stepped.rank:
        return _Call(now.category, f"crossed a size threshold without meeting the growth definition: "
                     f"reclassified by size ({now.rule.replace(' at baseline', '')})", "stable_or_decreased",
                     warning=warning)
    return _Call(stepped, rule, "stable_or_decreased", warning=warning)


def assess_airway_nodule(n: AirwayNodule) -> _Call:
    if n.level == "subsegmental":
        if n.status != "existing" or n.change == "stable":
            return _Call(C2, f"airway nodule, subsegmental, {n.status if n.status != 'existing' else 'stable'}")
        if n.change == "decreased":
            return _Call(C2, "airway nodule, subsegmental, decreased (stable or decreased findings are not "
                         "upgraded)", "stable_or_decreased")
        return _Call(None, "airway nodule, subsegmental, growing", "growing",
                     abstention="a growing subsegmental airway nodule is not covered by the Lung-RADS v2022 table")
    if n.status != "existing":
        return _Call(C4A, f"airway nodule, segmental or more proximal, at {n.status}")
    if n.change in ("stable", "growing"):
        return _Call(C4B, f"airway nodule, segmental or more proximal, {n.change} (persisting)",
                     "growing" if n.change == "growing" else "stable_or_decreased")
    return _Call(None, "airway nodule, segmental or more proximal, decreased", "stable_or_decreased",
                 abstention="a decreased segmental or more proximal airway nodule is not covered by the Lung-RADS "
                            "v2022 table (only stable or growing → 4B)")


def assess_cyst(c: AtypicalCyst) -> _Call:
    thick, multi = c.wall == "thick", c.multilocular
    if c.status != "existing":
        if thick and multi:
            return _Call(C4A, f"thick-walled multilocular cyst at {c.status}")
        if multi:
            return _Call(C4A, f"multilocular cyst at {c.status}")
        if thick:
            return _Call(C4A, f"thick-walled cyst at {c.status}")
        return _Call(None, "thin-walled unilocular cyst: benign, not categorised")
    if thick and c.growing_wall_thickness_or_nodularity:
        return _Call(C4B, "thick-walled cyst with growing wall thickness or nodularity", "growing")
    if multi and c.growing_cystic_component:
        return _Call(C4B, "growing multilocular cyst (mean diameter)", "growing")
    if multi and (c.increased_loculation or c.new_or_increased_opacity):
        return _Call(C4B, "multilocular cyst with increased loculation or new or increased opacity", "growing")
    if c.became_multilocular:
        return _Call(C4A, f"{c.wall}-walled cyst that became multilocular", "growing")
    if thick and c.growing_cystic_component:
        return _Call(C3, "growing cystic component of a thick-walled cyst", "growing")
    if c.growing_cystic_component or c.new_or_increased_opacity or c.growing_wall_thickness_or_nodularity:
        return _Call(None, f"{c.wall}-walled {'multilocular' if multi else 'unilocular'} cyst with a change",
                     "growing", abstention="this change of a thin-walled or unilocular cyst is not covered by the "
                                           "Lung-RADS v2022 atypical-cyst rows")
    if not thick and not multi:
        return _Call(None, "thin-walled unilocular cyst: benign, not categorised", "stable_or_decreased")
    if c.prior_category is not None:
        stepped, rule = _stepped(c.prior_category)
        return _Call(stepped, rule, "stable_or_decreased")
    stepped, rule = _stepped(C4A)
    return _Call(stepped, rule, "stable_or_decreased",
                 warning="prior_category not given for an existing atypical cyst: inferred 4A from its row")


def _assess(finding: ParenchymalNodule | AirwayNodule | AtypicalCyst) -> _Call:
    if isinstance(finding, ParenchymalNodule):
        return assess_nodule(finding)
    if isinstance(finding, AirwayNodule):
        return assess_airway_nodule(finding)
    return assess_cyst(finding)


def _as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def compute_lungrads(data: LungRadsInput) -> LungRadsResult:
    """Lung-RADS v2022 category, management and follow-up interval of one screening exam."""
    assessments: list[FindingAssessment] = []
    warnings: list[str] = []
    for i, f in enumerate(data.findings):
        call = _assess(f)
        mean = f.mean_mm if isinstance(f, ParenchymalNodule) else None
        solid = f.solid_mean_mm if isinstance(f, ParenchymalNodule) else None
        assessments.append(FindingAssessment(index=i, id=f.id, finding=f.finding, category=call.category,
                                             rule=call.rule, mean_diameter_mm=_as_float(mean),
                                             solid_component_mean_diameter_mm=_as_float(solid), change=call.change,
                                             abstention=call.abstention))
        if call.warning:
            warnings.append(f"findings[{i}]: {call.warning}")
    incomplete = []
    if data.prior_ct_being_located:
        incomplete.append("prior chest CT being located for comparison")
    if data.lungs_not_fully_evaluable:
        incomplete.append("part or all of the lungs cannot be evaluated")
    if data.infectious_or_inflammatory_findings:
        incomplete.append("findings suggestive of an infectious or inflammatory process")
    unresolved = [a for a in assessments if a.abstention]
    if unresolved and not incomplete:
        return abstained(LungRadsResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                         reasons=[f"findings[{a.index}]: {a.abstention}" for a in unresolved], warnings=warnings)
    if unresolved:
        warnings.extend(f"findings[{a.index}]: {a.abstention}" for a in unresolved)
    categorised = [a for a in assessments if a.category is not None]
    governing = max(categorised, key=lambda a: a.category.rank if a.category else -1, default=None)
    if incomplete:
        category = C0
        management = MANAGEMENT_INFECTIOUS if data.infectious_or_inflammatory_findings else MANAGEMENT_INCOMPLETE
        follow_up: tuple[int, int] | None = (1, 3) if data.infectious_or_inflammatory_findings else None
    else:
        category = governing.category if governing is not None and governing.category is not None else C1
        management, follow_up = MANAGEMENT[category]
        if category in (C4B, C4X) and governing is not None and governing.finding == "airway_nodule":
            management = f"{management} {AIRWAY_4B_MANAGEMENT}"
    suffix = "S" if data.significant_other_findings else ""
    outputs = LungRadsOutputs(
        category=category, s_modifier=data.significant_other_findings,
        category_with_modifier=f"{category.value}{suffix}", descriptor=DESCRIPTORS[category], management=management,
        follow_up_interval_months=follow_up, malignancy_probability=MALIGNANCY_PROBABILITY.get(category),
        incomplete_reasons=tuple(incomplete),
        governing_finding_index=governing.index if governing is not None and category is not C0 else None,
        findings=tuple(assessments))
    return scored(LungRadsResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=outputs, warnings=warnings)
