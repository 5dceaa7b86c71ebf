"""Guideline categories and follow-up for tracked nodules: Lung-RADS v2022 (screening) or Fleischner 2017
(incidental). Which applies, due dates and the mapping choices are documented in :mod:`risk.assess.policy`.

Mapping a tracked nodule to the guideline inputs (documented choices):

* size: long and short axes when both were measured; else the reported diameter as the mean diameter (it is the
  longest diameter, so the category errs towards the larger size); else the sphere-equivalent diameter of the
  volume (Lung-RADS volume bands are sphere equivalents).
* composition: solid / part-solid / non-solid as reported; calcified → solid with benign calcification and
  fat-containing → fat (both Lung-RADS 1; Fleischner does not cover them, they get no follow-up); **unknown →
  graded as solid** (the strictest size thresholds), with a note.
* a part-solid nodule without a solid-component size cannot be graded by Lung-RADS: it is left out with a gap.
* spiculated margin → Lung-RADS "additional features that increase suspicion" (3/4 → 4X).
* juxtapleural with a smooth margin → the juxtapleural rule (its shape is not reported: the rule needs an
  oval/lentiform/triangular shape, so it is applied only when the reader reported both; otherwise by size).
* airway nodules: subsegmental or segmental-or-proximal; change from the previous diameter (> 1.5 mm growing,
  smaller decreased, else stable).
* Lung-RADS status: ``baseline`` on the patient's first CT, ``new`` when first seen on a later exam, ``existing``
  with its earlier measurements as priors and the category of the previous exam as ``prior_category`` (exams are
  graded in date order so stepped management is exact).
* Fleischner risk: **high** with any smoking history, or unknown smoking status (conservative), a first-degree
  family history of lung cancer, or emphysema/COPD; **low** otherwise (never-smoker without those factors).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from risk.assess.eligibility import eligible_on
from risk.assess.memo import Ref
from risk.assess.policy import AssessmentPolicy, DueWindow, due_window
from risk.domain.assessment import (
    Abstention,
    DataGap,
    DueStatus,
    NoduleCategory,
    Recommendation,
    RecommendationKind,
    RiskFlag,
    RiskFlagKind,
)
from risk.domain.clinical import ConditionKind
from risk.domain.imaging import (
    ImagingStudyRef,
    Margin,
    NoduleComposition,
    NoduleLocationType,
    NoduleObservation,
    NoduleTrack,
    TrackStatus,
)
from risk.domain.smoking import SmokingStatus
from risk.domain.snapshot import PatientSnapshot
from risk.guidelines import fleischner, lungrads
from risk.guidelines.lungrads_inputs import (
    AirwayNodule,
    BenignFeature,
    LungRadsCategory,
    LungRadsInput,
    ParenchymalNodule,
    PriorMeasurement,
    SolidComponent,
)

LUNG_RADS = f"Lung-RADS {lungrads.MODEL_VERSION}"
FLEISCHNER = f"Fleischner {fleischner.MODEL_VERSION}"
SUSPICIOUS_LUNG_RADS = frozenset({LungRadsCategory.C4A, LungRadsCategory.C4B, LungRadsCategory.C4X})


class Guideline(StrEnum):
    LUNG_RADS = "lung_rads"
    FLEISCHNER = "fleischner"


@dataclass(slots=True)
class NoduleFindings:
    """What the nodule guidelines contribute to an assessment."""

    categories: list[NoduleCategory] = field(default_factory=list)
    patient_category: NoduleCategory | None = None
    recommendations: list[Recommendation] = field(default_factory=list)
    abstentions: list[Abstention] = field(default_factory=list)
    gaps: list[DataGap] = field(default_factory=list)
    flags: list[RiskFlag] = field(default_factory=list)
    models: list[tuple[str, str]] = field(default_factory=list)
    suspicious_tracks: set[str] = field(default_factory=set)
    """Tracks whose category calls for work-up or short-interval imaging (Lung-RADS 4A+, Fleischner > 8 mm)."""


def due_status(window: DueWindow, on: date) -> DueStatus:
    if on < window.window_start:
        return DueStatus.NOT_YET_DUE
    if on <= window.overdue_after:
        return DueStatus.DUE
    return DueStatus.OVERDUE


def make_recommendation(kind: RecommendationKind, text: str, basis: str, window: DueWindow | None, on: date, *,
                        track_id: str | None = None, optional: bool = False,
                        last_done: date | None = None) -> Recommendation:
    if window is None:
        return Recommendation(kind=kind, text=text, basis=basis, due_date=None, status=DueStatus.NO_DATE,
                              track_id=track_id, optional=optional, last_done=last_done)
    return Recommendation(kind=kind, text=text, basis=basis, due_date=window.due_date,
                          status=due_status(window, on), track_id=track_id, window_start=window.window_start,
                          overdue_after=window.overdue_after, optional=optional, last_done=last_done)


# --- which guideline ----------------------------------------------------------------------------------------
def study_is_screening(snapshot: PatientSnapshot, study_uid: str, study_date: date,
                       policy: AssessmentPolicy) -> bool:
    """Policy rule 2-4 (module doc of risk.assess.policy): screening by description, else by eligibility."""
    study = _study(snapshot, study_uid)
    description = (study.description or "").lower() if study is not None else ""
    if description:
        return any(word in description for word in policy.screening_study_words)
    return bool(eligible_on(snapshot, study_date))


def _study(snapshot: PatientSnapshot, uid: str) -> ImagingStudyRef | None:
    return next((s for s in snapshot.imaging_studies if s.study_instance_uid == uid), None)


def describe(obs: NoduleObservation, track: NoduleTrack | None = None) -> str:
    parts = []
    size = obs.longest_diameter_mm
    if obs.long_axis_mm is not None and obs.short_axis_mm is not None:
        parts.append(f"{(obs.long_axis_mm + obs.short_axis_mm) / 2:.1f} mm (mean)")
    elif size is not None:
        parts.append(f"{size:.1f} mm")
    elif obs.volume_mm3 is not None:
        parts.append(f"{obs.volume_mm3:.0f} mm³")
    if obs.composition is not NoduleComposition.UNKNOWN:
        parts.append(obs.composition.value.replace("_", "-"))
    if obs.lobe is not None:
        parts.append(obs.lobe.value)
    if obs.margin is Margin.SPICULATED:
        parts.append("spiculated")
    text = " ".join(parts) if parts else "nodule"
    if track is not None and track.growth is not None:
        text += f", {track.growth.description}"
    elif track is not None and track.status is TrackStatus.NEW:
        text += ", new"
    return text


# --- entry point ---------------------------------------------------------------------------------------------
_CACHE_SIZE = 4096


def assess_nodules(snapshot: PatientSnapshot, policy: AssessmentPolicy) -> NoduleFindings:
    """The guideline findings for the snapshot's nodules.

    A pure function of the tracks, the studies, the date, the patient facts the guidelines read (demographics,
    smoking, conditions, family history) and the policy, so it is memoised on exactly those (LRU, 4096 entries):
    a chart reopened with the same imaging does not re-grade every exam. Callers get their own copy.
    """
    key = (Ref(snapshot.nodule_tracks), snapshot.imaging_studies, snapshot.as_of, snapshot.demographics,
           snapshot.smoking, snapshot.conditions, snapshot.family_history, policy)
    try:
        frozen = _assess_nodules_cached(key)
    except TypeError:  # an unhashable field (never with the domain types): compute directly
        frozen = _freeze(_assess_nodules(snapshot, policy))
    return NoduleFindings(categories=list(frozen[0]), patient_category=frozen[1], recommendations=list(frozen[2]),
                          abstentions=list(frozen[3]), gaps=list(frozen[4]), flags=list(frozen[5]),
                          models=list(frozen[6]), suspicious_tracks=set(frozen[7]))


_Frozen = tuple[tuple[NoduleCategory, ...], NoduleCategory | None, tuple[Recommendation, ...], tuple[Abstention, ...],
                tuple[DataGap, ...], tuple[RiskFlag, ...], tuple[tuple[str, str], ...], frozenset[str]]


def _freeze(f: NoduleFindings) -> _Frozen:
    return (tuple(f.categories), f.patient_category, tuple(f.recommendations), tuple(f.abstentions), tuple(f.gaps),
            tuple(f.flags), tuple(f.models), frozenset(f.suspicious_tracks))


@lru_cache(maxsize=_CACHE_SIZE)
def _assess_nodules_cached(key: tuple[Any, ...]) -> _Frozen:
    tracks, studies, as_of, demographics, smoking, conditions, family, policy = key
    snapshot = PatientSnapshot(patient_id="-", as_of=as_of, demographics=demographics, smoking=smoking,
                               conditions=conditions, family_history=family, imaging_studies=studies,
                               nodule_tracks=tracks.obj)
    return _freeze(_assess_nodules(snapshot, policy))


def _assess_nodules(snapshot: PatientSnapshot, policy: AssessmentPolicy) -> NoduleFindings:
    out = NoduleFindings()
    active = [t for t in snapshot.nodule_tracks if t.status is not TrackStatus.RESOLVED]
    if not active:
        return out
    if snapshot.has_condition(ConditionKind.LUNG_CANCER):
        out.abstentions.append(Abstention("nodule guidelines", "the patient has a lung cancer diagnosis: nodules "
                                          "are managed by the treating team, not by Lung-RADS or Fleischner"))
        return out
    for track in active:
        if track.growth is not None and track.growth.category.is_growth:
            out.flags.append(RiskFlag(RiskFlagKind.RISING, f"nodule {track.track_id} {track.growth.description} "
                                      "(NELSON growth: volume +25% or more)", model="vdt"))
    screening_tracks: list[NoduleTrack] = []
    incidental_tracks: list[NoduleTrack] = []
    for track in active:
        latest = track.latest
        if study_is_screening(snapshot, latest.study_instance_uid, latest.study_date, policy):
            screening_tracks.append(track)
        else:
            incidental_tracks.append(track)
    if screening_tracks:
        _lung_rads(snapshot, screening_tracks, policy, out)
    if incidental_tracks:
        _fleischner(snapshot, incidental_tracks, policy, out)
    _check_later_ct(snapshot, policy, out)
    return out


def chest_ct_studies(snapshot: PatientSnapshot, policy: AssessmentPolicy) -> tuple[ImagingStudyRef, ...]:
    """CT studies of the chest: described with a chest word, or undescribed (counted as chest; documented in
    risk.assess.policy), or carrying nodule measurements."""
    with_nodules = {o.study_instance_uid for t in snapshot.nodule_tracks for o in t.observations}
    out = []
    for study in snapshot.ct_studies:
        description = (study.description or "").lower()
        if (not description or study.study_instance_uid in with_nodules
                or any(w in description for w in policy.chest_study_words + policy.screening_study_words)):
            out.append(study)
    return tuple(out)


def last_chest_ct(snapshot: PatientSnapshot, policy: AssessmentPolicy) -> date | None:
    dates = [s.started for s in chest_ct_studies(snapshot, policy) if s.started is not None]
    dates += [o.study_date for t in snapshot.nodule_tracks for o in t.observations]
    return max(dates) if dates else None


def _check_later_ct(snapshot: PatientSnapshot, policy: AssessmentPolicy, out: NoduleFindings) -> None:
    """A CT after a nodule's last measurement, with no nodule results for it, makes the follow-up unknown."""
    last_ct = last_chest_ct(snapshot, policy)
    if last_ct is None:
        return
    kept = []
    for rec in out.recommendations:
        if rec.track_id is not None and rec.last_done is not None and last_ct > rec.last_done:
            out.gaps.append(DataGap(f"nodule {rec.track_id} follow-up",
                                    f"a chest CT of {last_ct.isoformat()} has no nodule measurements yet; the "
                                    f"follow-up status since {rec.last_done.isoformat()} cannot be checked"))
            continue
        kept.append(rec)
    out.recommendations = kept


# --- Lung-RADS ----------------------------------------------------------------------------------------------
_COMPOSITION = {NoduleComposition.SOLID: "solid", NoduleComposition.PART_SOLID: "part_solid",
                NoduleComposition.NONSOLID: "nonsolid", NoduleComposition.CALCIFIED: "solid",
                NoduleComposition.FAT_CONTAINING: "solid", NoduleComposition.UNKNOWN: "solid"}


def _size_fields(obs: NoduleObservation) -> dict[str, float]:
    if obs.long_axis_mm is not None and obs.short_axis_mm is not None:
        return {"long_axis_mm": obs.long_axis_mm, "short_axis_mm": obs.short_axis_mm}
    if obs.diameter_mm is not None:
        return {"mean_diameter_mm": obs.diameter_mm}
    if obs.long_axis_mm is not None:
        return {"mean_diameter_mm": obs.long_axis_mm}
    assert obs.volume_mm3 is not None
    return {"mean_diameter_mm": round((6 * obs.volume_mm3 / math.pi) ** (1 / 3), 1)}


def _mean_mm(obs: NoduleObservation) -> float:
    f = _size_fields(obs)
    return (f["long_axis_mm"] + f["short_axis_mm"]) / 2 if "long_axis_mm" in f else f["mean_diameter_mm"]


def _lung_rads_finding(track: NoduleTrack, obs: NoduleObservation, status: str,
                       prior_category: LungRadsCategory | None, earlier: list[NoduleObservation]) -> Any:
    if obs.location_type in (NoduleLocationType.AIRWAY_SUBSEGMENTAL, NoduleLocationType.AIRWAY_SEGMENTAL_OR_PROXIMAL):
        change = None
        if status == "existing":
            delta = _mean_mm(obs) - _mean_mm(earlier[-1])
            change = "growing" if delta > 1.5 else "decreased" if delta < 0 else "stable"
        level = ("subsegmental" if obs.location_type is NoduleLocationType.AIRWAY_SUBSEGMENTAL
                 else "segmental_or_proximal")
        return AirwayNodule.model_validate({"finding": "airway_nodule", "id": track.track_id, "status": status,
                                            "level": level, "change": change, "prior_category": prior_category})
    composition = _COMPOSITION[obs.composition]
    benign = {NoduleComposition.CALCIFIED: BenignFeature.COMPLETE_CALCIFICATION,
              NoduleComposition.FAT_CONTAINING: BenignFeature.FAT}.get(obs.composition)
    solid = SolidComponent(mean_diameter_mm=obs.solid_component_mm) if obs.solid_component_mm else None
    priors = []
    if status == "existing":
        for prior in earlier:
            prior_solid = (SolidComponent(mean_diameter_mm=prior.solid_component_mm)
                           if prior.solid_component_mm else None)
            prior_comp = _COMPOSITION[prior.composition] if prior.composition is not NoduleComposition.UNKNOWN \
                else composition
            if prior_comp == "part_solid" and prior_solid is None:
                continue
            priors.append(PriorMeasurement.model_validate({
                "interval_days": float((obs.study_date - prior.study_date).days) or 1.0,
                "composition": prior_comp, "solid_component": prior_solid, **_size_fields(prior)}))
        if not priors:
            raise ValueError("no usable earlier measurement")
    return ParenchymalNodule.model_validate({
        "id": track.track_id, "status": status, "prior_category": prior_category, "composition": composition,
        "solid_component": solid if composition == "part_solid" else None,
        "juxtapleural": obs.location_type is NoduleLocationType.JUXTAPLEURAL,
        "smooth_margins": True if obs.margin is Margin.SMOOTH else None, "benign_feature": benign,
        "additional_suspicious_features": obs.margin is Margin.SPICULATED, "priors": priors, **_size_fields(obs)})


def _lung_rads(snapshot: PatientSnapshot, tracks: list[NoduleTrack], policy: AssessmentPolicy,
               out: NoduleFindings) -> None:
    out.models.append((lungrads.MODEL_NAME, lungrads.MODEL_VERSION))
    exams: dict[tuple[date, str], list[tuple[NoduleTrack, NoduleObservation]]] = defaultdict(list)
    for track in tracks:
        for obs in track.observations:
            exams[(obs.study_date, obs.study_instance_uid)].append((track, obs))
    ct_dates = sorted({s.started for s in chest_ct_studies(snapshot, policy) if s.started is not None}
                      | {d for d, _ in exams})
    first_exam_date = ct_dates[0]
    category_at: dict[tuple[str, str], LungRadsCategory] = {}
    last_result: tuple[date, str, Any, list[tuple[NoduleTrack, NoduleObservation]]] | None = None
    for (exam_date, study_uid) in sorted(exams):
        findings, members = [], []
        for track, obs in exams[(exam_date, study_uid)]:
            earlier = [o for o in track.observations if o.study_date < exam_date]
            if earlier:
                status = "existing"
            elif exam_date > first_exam_date:
                status = "new"
            else:
                status = "baseline"
            prior_category = category_at.get((track.track_id, earlier[-1].study_instance_uid)) if earlier else None
            if obs.composition is NoduleComposition.PART_SOLID and not obs.solid_component_mm:
                if exam_date == max(d for d, _ in exams):
                    out.gaps.append(DataGap(f"nodule {track.track_id}", "part-solid without a solid-component "
                                            "size: not graded by Lung-RADS"))
                continue
            try:
                findings.append(_lung_rads_finding(track, obs, status, prior_category, earlier))
                members.append((track, obs))
            except (ValidationError, ValueError) as exc:
                out.gaps.append(DataGap(f"nodule {track.track_id}", f"not graded by Lung-RADS ({_why(exc)})"))
        if not findings:
            continue
        try:
            result = lungrads.compute_lungrads(LungRadsInput(findings=findings))
        except ValidationError as exc:
            out.gaps.append(DataGap(f"screening CT of {exam_date.isoformat()}", f"not graded ({_why(exc)})"))
            continue
        if result.outputs is None:
            if exam_date == max(d for d, _ in exams):
                out.abstentions.append(Abstention(LUNG_RADS, "; ".join(result.abstentions)))
            continue
        for fa, (track, _obs) in zip(result.outputs.findings, members, strict=True):
            if fa.category is not None:
                category_at[(track.track_id, study_uid)] = fa.category
        last_result = (exam_date, study_uid, result.outputs, members)
    if last_result is None:
        return
    exam_date, study_uid, outputs, members = last_result
    for fa, (track, obs) in zip(outputs.findings, members, strict=True):
        if fa.category is None:
            continue
        management, _interval = lungrads.MANAGEMENT.get(fa.category, (outputs.management, None))
        if fa.category in SUSPICIOUS_LUNG_RADS:
            out.suspicious_tracks.add(track.track_id)
        if fa.change in ("growing", "slow_growth", "new_solid_component"):
            out.flags.append(RiskFlag(RiskFlagKind.RISING, f"nodule {track.track_id}: {fa.rule} (Lung-RADS)",
                                      model=lungrads.MODEL_NAME))
        out.categories.append(NoduleCategory(
            track_id=track.track_id, guideline=LUNG_RADS, category=fa.category.value, management=management,
            due_date=None, tracking_uid=obs.tracking_uid, description=describe(obs, track) + f" ({fa.rule})",
            study_date=exam_date))
    governing = outputs.governing_finding_index
    gov_track = members[governing][0] if governing is not None else members[0][0]
    gov_obs = members[governing][1] if governing is not None else members[0][1]
    interval = outputs.follow_up_interval_months
    category = outputs.category
    if interval is not None and tuple(interval) == (12, 12):
        kind, window = RecommendationKind.SCREENING_LDCT, due_window(exam_date, months=12)
        text = "Annual screening LDCT"
    elif interval is not None:
        lo, hi = interval
        window = due_window(exam_date, months=lo) if lo == hi else due_window(exam_date, months_range=(lo, hi))
        kind = RecommendationKind.FOLLOW_UP_LDCT
        text = f"Follow-up LDCT in {lo} months" if lo == hi else f"Follow-up LDCT in {lo}-{hi} months"
    elif category in (LungRadsCategory.C4B, LungRadsCategory.C4X):
        kind, window = RecommendationKind.DIAGNOSTIC_WORKUP, due_window(exam_date, months=0)
        text = "Referral for diagnostic work-up (diagnostic CT, PET/CT or tissue sampling)"
    else:
        kind, window = RecommendationKind.FOLLOW_UP_LDCT, None
        text = "Additional screening CT images or comparison with prior CT"
    patient_cat = NoduleCategory(
        track_id=gov_track.track_id, guideline=LUNG_RADS, category=outputs.category_with_modifier,
        management=outputs.management, due_date=window.due_date if window else None,
        tracking_uid=gov_obs.tracking_uid, description=describe(gov_obs, gov_track), study_date=exam_date)
    out.patient_category = _more_urgent(out.patient_category, patient_cat)
    out.categories = [c if c.track_id != gov_track.track_id or c.guideline != LUNG_RADS else
                      NoduleCategory(track_id=c.track_id, guideline=c.guideline, category=c.category,
                                     management=c.management, due_date=patient_cat.due_date,
                                     tracking_uid=c.tracking_uid, description=c.description,
                                     study_date=c.study_date)
                      for c in out.categories]
    basis = f"{LUNG_RADS} category {outputs.category_with_modifier} on the screening CT of {exam_date.isoformat()}"
    out.recommendations.append(make_recommendation(kind, text, basis, window, snapshot.as_of,
                                                   track_id=gov_track.track_id, last_done=exam_date))


def _more_urgent(a: NoduleCategory | None, b: NoduleCategory) -> NoduleCategory:
    if a is None:
        return b
    if a.due_date is None:
        return b
    if b.due_date is None:
        return a
    return b if b.due_date < a.due_date else a


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        ctx = err.get("ctx") or {}
        return str(ctx.get("message") or err.get("msg"))
    return str(exc)


# --- Fleischner ---------------------------------------------------------------------------------------------
_FLEISCHNER_KIND = {NoduleComposition.SOLID: "solid", NoduleComposition.PART_SOLID: "part_solid",
                    NoduleComposition.NONSOLID: "ground_glass", NoduleComposition.UNKNOWN: "solid"}


def fleischner_risk(snapshot: PatientSnapshot) -> str:
    smoking = snapshot.smoking
    if smoking is None or smoking.status is not SmokingStatus.NEVER:
        return "high"
    if snapshot.family_history_lung_cancer or snapshot.has_condition(ConditionKind.EMPHYSEMA) \
            or snapshot.has_condition(ConditionKind.COPD):
        return "high"
    return "low"


def _fleischner(snapshot: PatientSnapshot, tracks: list[NoduleTrack], policy: AssessmentPolicy,
                out: NoduleFindings) -> None:
    out.models.append((fleischner.MODEL_NAME, fleischner.MODEL_VERSION))
    graded = [t for t in tracks if t.latest.composition not in (NoduleComposition.CALCIFIED,
                                                                 NoduleComposition.FAT_CONTAINING)]
    for t in tracks:
        if t not in graded:
            out.categories.append(NoduleCategory(
                track_id=t.track_id, guideline=FLEISCHNER, category="benign",
                management="Benign calcification or fat: no follow-up.", tracking_uid=t.latest.tracking_uid,
                description=describe(t.latest, t), study_date=t.latest.study_date))
    if not graded:
        return
    demo = snapshot.demographics
    if demo is None:
        out.abstentions.append(Abstention(FLEISCHNER, "age unknown: the guideline covers adults aged 35 or more"))
        return
    latest_date = max(t.latest.study_date for t in graded)
    nodules = []
    for t in graded:
        obs = t.latest
        size = _size_fields(obs) if obs.diameter_mm is not None or obs.long_axis_mm is not None \
            else {"volume_mm3": obs.volume_mm3}
        nodules.append(fleischner.FleischnerNodule(
            id=t.track_id, composition=_FLEISCHNER_KIND[obs.composition],  # type: ignore[arg-type]
            solid_component_mm=obs.solid_component_mm if obs.composition is NoduleComposition.PART_SOLID else None,
            **size))
    try:
        data = fleischner.FleischnerInput(
            age=float(demo.age_years(latest_date)), risk=fleischner_risk(snapshot),  # type: ignore[arg-type]
            immunocompromised=snapshot.has_condition(ConditionKind.IMMUNOCOMPROMISED),
            known_primary_cancer=snapshot.has_condition(ConditionKind.PERSONAL_HISTORY_OF_CANCER),
            nodules=nodules)
    except ValidationError as exc:
        out.gaps.append(DataGap("incidental nodules", f"not graded by Fleischner ({_why(exc)})"))
        return
    result = fleischner.compute_fleischner(data)
    if result.outputs is None:
        out.abstentions.append(Abstention(FLEISCHNER, "; ".join(result.abstentions)))
        return
    outputs = result.outputs
    recs: list[tuple[int, Recommendation, NoduleTrack]] = []
    for nr, track in zip(outputs.nodules, graded, strict=True):
        if nr.intensity >= 5 or (nr.composition == "solid" and nr.size_band == ">8"):
            out.suspicious_tracks.add(track.track_id)
        rec = _fleischner_step(snapshot, track, nr)
        due = rec.due_date if rec is not None else None
        out.categories.append(NoduleCategory(
            track_id=track.track_id, guideline=FLEISCHNER, category=nr.row, management=nr.recommendation,
            due_date=due, tracking_uid=track.latest.tracking_uid, description=describe(track.latest, track),
            study_date=track.latest.study_date))
        if rec is not None:
            recs.append((nr.intensity, rec, track))
    gov = outputs.nodules[outputs.governing_nodule_index]
    gov_track = graded[outputs.governing_nodule_index]
    gov_rec = next((r for _, r, t in recs if t is gov_track), None)
    out.patient_category = _more_urgent(out.patient_category, NoduleCategory(
        track_id=gov_track.track_id, guideline=FLEISCHNER, category=gov.row, management=gov.recommendation,
        due_date=gov_rec.due_date if gov_rec else None, tracking_uid=gov_track.latest.tracking_uid,
        description=describe(gov_track.latest, gov_track), study_date=gov_track.latest.study_date))
    # one recommendation per nodule that has a next step (the most intensive first)
    for _, rec, _track in sorted(recs, key=lambda x: (-x[0], x[1].due_date or date.max)):
        out.recommendations.append(rec)


def _fleischner_step(snapshot: PatientSnapshot, track: NoduleTrack,
                     nr: fleischner.NoduleRecommendation) -> Recommendation | None:
    """The next step of the nodule's Fleischner plan, counting follow-up CTs already done on this nodule."""
    first, latest = track.first, track.latest
    done = len({o.study_instance_uid for o in track.observations}) - 1
    steps = nr.follow_up
    basis = f"{FLEISCHNER}: {nr.row} (CT of {first.study_date.isoformat()})"
    if done >= len(steps):
        if not steps:
            return make_recommendation(RecommendationKind.NO_ROUTINE_FOLLOW_UP, "No routine follow-up", basis,
                                       None, snapshot.as_of, track_id=track.track_id, last_done=latest.study_date)
        return make_recommendation(RecommendationKind.NO_ROUTINE_FOLLOW_UP,
                                   "Fleischner follow-up steps completed", basis, None, snapshot.as_of,
                                   track_id=track.track_id, last_done=latest.study_date)
    step = steps[done]
    anchor = latest.study_date if step.relative_to == "previous_step" else first.study_date
    window = due_window(anchor, months_range=(step.min_months, step.max_months))
    if step.min_months == step.max_months:
        window = DueWindow(window_start=window.window_start, due_date=window.due_date,
                           overdue_after=due_window(anchor, months=step.min_months).overdue_after)
    kind = (RecommendationKind.DIAGNOSTIC_WORKUP if "PET" in step.description or "tissue" in step.description
            else RecommendationKind.FOLLOW_UP_CT)
    months = f"{step.min_months}" if step.min_months == step.max_months else f"{step.min_months}-{step.max_months}"
    text = f"{step.description[:1].upper()}{step.description[1:]} ({months} months)"
    return make_recommendation(kind, text, basis, window, snapshot.as_of, track_id=track.track_id,
                               optional=step.optional, last_done=latest.study_date)
