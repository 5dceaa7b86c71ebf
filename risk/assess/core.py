"""PatientSnapshot (+ an optional fusion model) → Assessment: the one place clinical logic is combined.

The CDS service, the SMART app and the population job render the :class:`~risk.domain.Assessment`; none of them
recomputes eligibility, categories, risks or due dates. The choices behind every rule are in
:mod:`risk.assess.policy`; the guideline mappings in :mod:`risk.assess.nodules`.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, date, datetime

from risk.assess.eligibility import PROGRAM_LABELS, eligibility_decisions
from risk.assess.nodules import assess_nodules, last_chest_ct, make_recommendation
from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy, due_window
from risk.assess.risks import (
    FusionPredictorLike,
    brock_estimate,
    fusion_estimate,
    plcom2012_estimate,
)
from risk.domain.assessment import (
    Abstention,
    Assessment,
    DataGap,
    EligibilityDecision,
    Provenance,
    Recommendation,
    RecommendationKind,
    RiskEstimate,
    RiskFlag,
    RiskFlagKind,
    ScreeningProgram,
    StaleData,
)
from risk.domain.imaging import TrackStatus
from risk.domain.provenance import NoteSeverity, SourceRef
from risk.domain.snapshot import PatientSnapshot, SourceState
from risk.guidelines import eligibility as eligibility_rules

ELIGIBILITY_SOURCE = ("eligibility", eligibility_rules.MODEL_VERSION)
_RNG = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _RNG.seed(os.urandom(32)))


def new_assessment_id() -> str:
    """128 random bits as 32 hex digits, from a per-process generator seeded by the OS (no syscall per call)."""
    return f"{_RNG.getrandbits(128):032x}"


def assess(snapshot: PatientSnapshot, *, fusion: FusionPredictorLike | None = None,
           policy: AssessmentPolicy = DEFAULT_POLICY, generated_at: datetime | None = None,
           assessment_id: str | None = None) -> Assessment:
    """Everything the service says about one patient on ``snapshot.as_of``.

    Never raises on a valid snapshot: a model or guideline that cannot run is an :class:`Abstention`, data that
    could not be read is a :class:`DataGap`.
    """
    generated_at = generated_at or datetime.now(UTC)
    eligibility = eligibility_decisions(snapshot)
    risks: list[RiskEstimate] = []
    abstentions: list[Abstention] = []
    flags: list[RiskFlag] = []
    models: list[tuple[str, str]] = [ELIGIBILITY_SOURCE]

    plco = plcom2012_estimate(snapshot)
    _collect(plco, risks, abstentions)
    if isinstance(plco, RiskEstimate) and plco.probability >= policy.high_risk_6yr:
        flags.append(RiskFlag(RiskFlagKind.HIGH, f"{plco.model} 6-year risk {plco.probability:.2%} ≥ "
                              f"{policy.high_risk_6yr:.2%} (Tammemägi, PLOS Med 2014)", model=plco.model))

    nodules = assess_nodules(snapshot, policy)
    abstentions.extend(nodules.abstentions)
    flags.extend(nodules.flags)
    models.extend(nodules.models)

    for track in snapshot.nodule_tracks:
        if track.status is TrackStatus.RESOLVED:
            continue
        estimate = brock_estimate(snapshot, track)
        _collect(estimate, risks, abstentions)
        if isinstance(estimate, RiskEstimate) and estimate.probability >= policy.high_risk_brock:
            flags.append(RiskFlag(RiskFlagKind.HIGH, f"nodule {track.track_id}: Brock malignancy probability "
                                  f"{estimate.probability:.1%} ≥ {policy.high_risk_brock:.0%} (BTS work-up "
                                  "threshold)", model=estimate.model))

    if fusion is not None:
        estimate = fusion_estimate(snapshot, fusion)
        _collect(estimate, risks, abstentions)
        if isinstance(estimate, RiskEstimate):
            threshold = policy.high_risk_6yr if estimate.horizon_years == 6 else policy.high_risk_fusion
            if estimate.probability >= threshold:
                horizon = f"{estimate.horizon_years:g}-year " if estimate.horizon_years else ""
                flags.append(RiskFlag(RiskFlagKind.HIGH, f"{estimate.model} {horizon}risk "
                                      f"{estimate.probability:.2%} ≥ {threshold:.2%}", model=estimate.model))

    recommendations = list(nodules.recommendations)
    last_ct = last_chest_ct(snapshot, policy)
    recommendations.extend(_screening(snapshot, eligibility, recommendations, last_ct, policy))

    gaps = list(nodules.gaps) + _data_gaps(snapshot, eligibility)
    for name, version in ((r.model, r.model_version) for r in risks):
        if (name, version) not in models:
            models.append((name, version))
    provenance = Provenance(sources=_sources(snapshot), model_versions=tuple(dict.fromkeys(models)),
                            generated_at=generated_at, stale=tuple(_stale(snapshot, policy)))
    return Assessment(
        assessment_id=assessment_id or new_assessment_id(),
        patient_id=snapshot.patient_id,
        as_of=snapshot.as_of,
        eligibility=eligibility,
        risks=tuple(risks),
        nodule_categories=tuple(nodules.categories),
        patient_category=nodules.patient_category,
        recommendations=tuple(recommendations),
        abstentions=tuple(abstentions),
        provenance=provenance,
        notes=snapshot.notes,
        risk_flags=tuple(dict.fromkeys(flags)),
        data_gaps=tuple(dict.fromkeys(gaps)),
        last_ct_date=last_ct,
    )


def _collect(result: RiskEstimate | Abstention, risks: list[RiskEstimate], abstentions: list[Abstention]) -> None:
    if isinstance(result, RiskEstimate):
        risks.append(result)
    else:
        abstentions.append(result)


def eligible_programs(eligibility: tuple[EligibilityDecision, ...]) -> tuple[ScreeningProgram, ...]:
    return tuple(d.program for d in eligibility if d.eligible)


def _screening(snapshot: PatientSnapshot, eligibility: tuple[EligibilityDecision, ...],
               existing: list[Recommendation], last_ct: date | None, policy: AssessmentPolicy
               ) -> list[Recommendation]:
    """Annual screening for an eligible patient, unless a nodule plan already sets the next CT."""
    programs = eligible_programs(eligibility)
    if not programs:
        return []
    if any(r.kind in (RecommendationKind.SCREENING_LDCT, RecommendationKind.FOLLOW_UP_LDCT,
                      RecommendationKind.FOLLOW_UP_CT, RecommendationKind.DIAGNOSTIC_WORKUP) for r in existing):
        return []
    labels = ", ".join(PROGRAM_LABELS[p] for p in programs)
    out: list[Recommendation] = []
    if last_ct is None:
        window = due_window(snapshot.as_of, months=0)
        out.append(make_recommendation(
            RecommendationKind.SCREENING_LDCT, "Screening LDCT (no prior chest CT on record)",
            f"eligible for lung cancer screening ({labels})", window, snapshot.as_of))
        if ScreeningProgram.CMS_2022 in programs:
            out.append(make_recommendation(
                RecommendationKind.SHARED_DECISION_MAKING,
                "Shared decision-making visit before the first screening LDCT (HCPCS G0296)",
                "CMS NCD 210.14: counselling and shared decision-making visit before the first screen", window,
                snapshot.as_of))
        return out
    window = due_window(last_ct, months=policy.annual_interval_months)
    out.append(make_recommendation(
        RecommendationKind.SCREENING_LDCT, "Annual screening LDCT",
        f"eligible for lung cancer screening ({labels}); last chest CT {last_ct.isoformat()}", window,
        snapshot.as_of, last_done=last_ct))
    return out


def _data_gaps(snapshot: PatientSnapshot, eligibility: tuple[EligibilityDecision, ...]) -> list[DataGap]:
    gaps: list[DataGap] = []
    for status in snapshot.source_status:
        if status.state in (SourceState.PARTIAL, SourceState.UNAVAILABLE):
            what = {"fhir": "EHR data", "dicomweb": "imaging (PACS)", "pacs": "imaging (PACS)"}.get(
                status.system, status.system)
            reason = "not reachable" if status.state is SourceState.UNAVAILABLE else "partly read"
            gaps.append(DataGap(what, f"{reason}{': ' + status.detail if status.detail else ''}"))
    for note in snapshot.notes:
        if note.severity is NoteSeverity.ERROR:
            gaps.append(DataGap(note.source, note.message))
    missing = sorted({m for d in eligibility if d.eligible is None for m in d.missing_inputs})
    if missing:
        gaps.append(DataGap("screening eligibility", "missing " + ", ".join(missing)))
    return gaps


def _stale(snapshot: PatientSnapshot, policy: AssessmentPolicy) -> list[StaleData]:
    out: list[StaleData] = []
    as_of = snapshot.as_of

    def check(what: str, effective: date | None, limit: int) -> None:
        if effective is not None and (as_of - effective).days > limit:
            out.append(StaleData(what=what, effective=effective, limit_days=limit))

    if snapshot.smoking is not None:
        check("smoking history", snapshot.smoking.effective, policy.stale_smoking_days)
    if snapshot.bmi is not None:
        check("BMI", snapshot.bmi.effective, policy.stale_bmi_days)
    if snapshot.labs:
        check("laboratory results", max(lab.effective for lab in snapshot.labs), policy.stale_lab_days)
    last_ct = last_chest_ct(snapshot, policy)
    if last_ct is not None and snapshot.nodule_tracks:
        check("latest chest CT", last_ct, policy.stale_ct_days)
    return out


def _sources(snapshot: PatientSnapshot) -> tuple[SourceRef, ...]:
    refs: list[SourceRef] = []
    if snapshot.demographics is not None:
        refs.append(snapshot.demographics.source)
    if snapshot.smoking is not None:
        refs.extend(snapshot.smoking.sources)
    if snapshot.bmi is not None:
        refs.append(snapshot.bmi.source)
    if snapshot.education is not None:
        refs.append(snapshot.education.source)
    refs.extend(c.source for c in snapshot.conditions)
    refs.extend(f.source for f in snapshot.family_history)
    refs.extend(lab.source for lab in snapshot.labs)
    refs.extend(s.source for s in snapshot.imaging_studies)
    refs.extend(o.source for t in snapshot.nodule_tracks for o in t.observations)
    seen: dict[str, SourceRef] = {}
    for ref in refs:
        seen.setdefault(ref.reference, ref)
    return tuple(seen.values())
