"""What each page shows, derived from one :class:`~risk.domain.Assessment` and its snapshot.

Formatting and selection only: no clinical logic is computed here (risk.assess did that). Numbers keep
their raw value next to the formatted text (``data-value`` attributes in the templates), so tests and
screen readers see exactly what the assessment said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from markupsafe import Markup

from risk.domain import (
    Abstention,
    Assessment,
    DueStatus,
    EligibilityDecision,
    NoduleCategory,
    NoduleObservation,
    NoduleTrack,
    PatientSnapshot,
    Recommendation,
    RiskEstimate,
    ScreeningProgram,
    SourceKind,
    SourceRef,
    SourceState,
    SourceStatus,
)
from risk.domain.assessment import model_label
from risk.domain.smoking import SmokingStatus
from risk.guidelines.growth import GrowthCategory, GrowthResult
from smart_app.charts import Bar, Point, contribution_bars_svg, time_series_svg

PLCOM2012_MODELS = ("plcom2012", "plcom2012-norace")

PROGRAM_LABELS = {
    ScreeningProgram.USPSTF_2021: "USPSTF 2021",
    ScreeningProgram.CMS_2022: "CMS 2022 (Medicare)",
    ScreeningProgram.ACS_2023: "ACS 2023",
}

GROWTH_LABELS = {
    GrowthCategory.SHRINKING: "Shrinking",
    GrowthCategory.NO_CHANGE: "No change",
    GrowthCategory.BELOW_THRESHOLD: "Stable (below the 25% growth threshold)",
    GrowthCategory.GROWTH_VDT_UNDER_400: "Growth, VDT < 400 days (NELSON positive)",
    GrowthCategory.GROWTH_VDT_400_TO_600: "Growth, VDT 400-600 days (NELSON indeterminate)",
    GrowthCategory.GROWTH_VDT_OVER_600: "Growth, VDT > 600 days (slow)",
}

DUE_LABELS = {
    DueStatus.NOT_YET_DUE: "not yet due",
    DueStatus.DUE: "due",
    DueStatus.OVERDUE: "overdue",
    DueStatus.NO_DATE: "no date",
}


def nodule_labels(snapshot: PatientSnapshot) -> dict[str, str]:
    """A short name per track: the SR's Tracking Identifier (e.g. "Nodule 1") when it has one, else the track id
    (long UID ids become "#<n>", their position on the timeline)."""
    out: dict[str, str] = {}
    for i, t in enumerate(snapshot.nodule_tracks):
        ident = next((o.tracking_identifier for o in reversed(t.observations) if o.tracking_identifier), None)
        out[t.track_id] = ident or (t.track_id if len(t.track_id) <= 20 else f"#{i + 1}")
    return out


def humanize(name: str) -> str:
    """``years_since_quit`` → ``years since quit`` (feature names as words)."""
    return name.replace("_", " ")


def format_pct(probability: float) -> str:
    """A probability as a percentage: two decimals under 1%, one decimal above."""
    pct = probability * 100.0
    if pct < 1.0:
        return f"{pct:.2f}%"
    return f"{pct:.1f}%"


def format_mm(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} mm"


def format_mm3(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} mm³"


# --- overview ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EligibilityRow:
    program: str
    eligible: bool | None
    verdict: str
    reason: str
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RiskRow:
    model: str
    model_version: str
    outcome: str
    probability: float
    probability_text: str
    horizon_years: float | None
    interval: tuple[float, float] | None
    interval_text: str | None
    learned: bool
    trained_on_synthetic_data: bool
    calibrator: str | None
    citation: str
    subject: str | None = None
    """The nodule the estimate is about (its label), for nodule-level models such as Brock."""


@dataclass(frozen=True, slots=True)
class CategoryRow:
    track_id: str
    guideline: str
    category: str
    management: str
    due_date: date | None
    description: str | None = None
    study_date: date | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class RecommendationRow:
    text: str
    basis: str
    due_date: date | None
    status: str
    status_label: str
    track_id: str | None
    window_start: date | None = None
    overdue_after: date | None = None
    optional: bool = False
    last_done: date | None = None


@dataclass(frozen=True, slots=True)
class FreshnessRow:
    what: str
    effective: date | None
    age_days: int | None
    stale: bool
    limit_days: int | None


@dataclass(frozen=True, slots=True)
class SourceStatusRow:
    system: str
    state: str
    ok: bool
    detail: str | None


@dataclass(frozen=True, slots=True)
class OverviewView:
    as_of: date
    generated_at: str
    assessment_id: str
    eligibility: tuple[EligibilityRow, ...]
    plcom2012: RiskRow | None
    plcom2012_abstention: Abstention | None
    fusion: RiskRow | None
    fusion_abstention: Abstention | None
    other_risks: tuple[RiskRow, ...]
    patient_category: CategoryRow | None
    nodule_categories: tuple[CategoryRow, ...]
    recommendations: tuple[RecommendationRow, ...]
    freshness: tuple[FreshnessRow, ...]
    source_status: tuple[SourceStatusRow, ...]
    any_stale: bool
    any_outage: bool
    notes: tuple[str, ...]
    other_abstentions: tuple[Abstention, ...]
    n_tracks: int = 0
    category_abstentions: tuple[Abstention, ...] = ()
    """Why there is no guideline category (the nodule guidelines abstained)."""
    risk_flags: tuple[tuple[str, str], ...] = ()
    """(kind, reason) of each flag the assessment raised (high / rising)."""
    data_gaps: tuple[tuple[str, str], ...] = ()
    """(what, reason) that could not be checked."""


def _risk_row(r: RiskEstimate, labels: dict[str, str] | None = None) -> RiskRow:
    interval_text = None
    if r.interval is not None:
        interval_text = f"{format_pct(r.interval[0])} – {format_pct(r.interval[1])}"
    return RiskRow(model=r.model, model_version=r.model_version, outcome=r.outcome, probability=r.probability,
                   probability_text=format_pct(r.probability), horizon_years=r.horizon_years,
                   interval=r.interval, interval_text=interval_text, learned=r.learned,
                   trained_on_synthetic_data=r.trained_on_synthetic_data, calibrator=r.calibrator,
                   citation=r.citation,
                   subject=None if r.subject is None else (labels or {}).get(r.subject, r.subject))


def _category_row(c: NoduleCategory, labels: dict[str, str] | None = None) -> CategoryRow:
    label = (labels or {}).get(c.track_id) or (c.track_id if len(c.track_id) <= 20 else "nodule")
    return CategoryRow(c.track_id, c.guideline, c.category, c.management, c.due_date, c.description, c.study_date,
                       label)


def _eligibility_row(e: EligibilityDecision) -> EligibilityRow:
    verdict = "Eligible" if e.eligible else ("Not eligible" if e.eligible is False else "Cannot tell")
    return EligibilityRow(PROGRAM_LABELS.get(e.program, str(e.program)), e.eligible, verdict, e.reason,
                          e.missing_inputs)


def _recommendation_row(r: Recommendation) -> RecommendationRow:
    return RecommendationRow(r.text, r.basis, r.due_date, r.status.value, DUE_LABELS[r.status], r.track_id,
                             r.window_start, r.overdue_after, r.optional, r.last_done)


def freshness_rows(snapshot: PatientSnapshot, assessment: Assessment) -> tuple[FreshnessRow, ...]:
    """The dates of the inputs that matter, with the stale flags the assessment raised."""
    stale = {s.what: s for s in assessment.provenance.stale}
    rows: list[FreshnessRow] = []

    def add(what: str, effective: date | None) -> None:
        s = stale.get(what)
        age = None if effective is None else (assessment.as_of - effective).days
        rows.append(FreshnessRow(what, effective, age, s is not None, s.limit_days if s else None))

    if snapshot.smoking is not None:
        add("smoking history", snapshot.smoking.effective)
    if snapshot.bmi is not None:
        add("BMI", snapshot.bmi.source.effective)
    add("last chest CT", assessment.last_ct_date or snapshot.last_ct_date)
    labels = nodule_labels(snapshot)
    for track in snapshot.nodule_tracks:
        add(f"{labels[track.track_id]} last measured", track.latest.study_date)
    seen = {r.what for r in rows}
    for s in assessment.provenance.stale:  # stale items the assessment named that are not listed above
        if s.what not in seen:
            rows.append(FreshnessRow(s.what, s.effective, (assessment.as_of - s.effective).days, True, s.limit_days))
    return tuple(rows)


def _status_rows(status: Sequence[SourceStatus]) -> tuple[SourceStatusRow, ...]:
    return tuple(SourceStatusRow(s.system, s.state.value, s.state is SourceState.OK, s.detail) for s in status)


def _is_guideline(model: str) -> bool:
    m = model.lower()
    return any(k in m for k in ("guideline", "lung-rads", "lungrads", "fleischner"))


def overview_view(snapshot: PatientSnapshot, assessment: Assessment) -> OverviewView:
    plco = next((r for r in assessment.risks if r.model in PLCOM2012_MODELS), None)
    plco_abst = next((a for a in assessment.abstentions if a.model in PLCOM2012_MODELS), None)
    fusion = next((r for r in assessment.risks if r.learned), None)
    fusion_abst = next((a for a in assessment.abstentions if "fusion" in a.model.lower()), None)
    shown = {id(plco), id(fusion)}
    others = tuple(_risk_row(r, nodule_labels(snapshot)) for r in assessment.risks if id(r) not in shown)
    category_abst = tuple(a for a in assessment.abstentions if _is_guideline(a.model))
    other_abst = tuple(a for a in assessment.abstentions
                       if a is not plco_abst and a is not fusion_abst and a not in category_abst)
    freshness = freshness_rows(snapshot, assessment)
    status = _status_rows(snapshot.source_status)
    labels = nodule_labels(snapshot)
    notes = tuple(f"{n.source}: {n.message}" for n in (*snapshot.notes, *assessment.notes)
                  if n.severity.value == "error")
    return OverviewView(
        as_of=assessment.as_of,
        generated_at=assessment.provenance.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        assessment_id=assessment.assessment_id,
        eligibility=tuple(_eligibility_row(e) for e in assessment.eligibility),
        plcom2012=_risk_row(plco) if plco else None,
        plcom2012_abstention=plco_abst,
        fusion=_risk_row(fusion) if fusion else None,
        fusion_abstention=fusion_abst,
        other_risks=others,
        patient_category=(_category_row(assessment.patient_category, labels) if assessment.patient_category
                          else None),
        nodule_categories=tuple(_category_row(c, labels) for c in assessment.nodule_categories),
        n_tracks=len(snapshot.nodule_tracks),
        category_abstentions=category_abst,
        recommendations=tuple(_recommendation_row(r) for r in assessment.recommendations),
        freshness=freshness,
        source_status=status,
        any_stale=any(r.stale for r in freshness),
        any_outage=any(not s.ok and s.state != SourceState.NOT_CONFIGURED.value for s in status),
        notes=notes,
        other_abstentions=other_abst,
        risk_flags=tuple((f.kind.value, f.reason) for f in assessment.risk_flags),
        data_gaps=tuple((g.what, g.reason) for g in assessment.data_gaps),
    )


# --- nodule timeline -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObservationRow:
    study_date: date
    study_instance_uid: str
    diameter_mm: float | None
    volume_mm3: float | None
    composition: str
    margin: str
    lobe: str | None
    ai_probability: float | None


@dataclass(frozen=True, slots=True)
class TrackView:
    number: int
    """1-based position on the page; the key-image URL uses it (no UIDs in URLs)."""
    track_id: str
    label: str
    tracking_uid: str | None
    status: str
    linkage: str
    observations: tuple[ObservationRow, ...]
    diameter_chart: Markup
    volume_chart: Markup
    growth: GrowthResult | None
    growth_label: str | None
    growth_description: str | None
    vdt_days: float | None
    category: CategoryRow | None
    has_key_image: bool
    key_image_date: date | None
    selected: bool
    notes: tuple[str, ...] = field(default=())


def key_image_observation(track: NoduleTrack) -> NoduleObservation | None:
    """The latest observation that names the slice it was measured on."""
    for obs in reversed(track.observations):
        if obs.slice_sop_instance_uid and obs.series_instance_uid:
            return obs
    return None


def _track_view(number: int, track: NoduleTrack, categories: dict[str, NoduleCategory],
                selected_uid: str | None, label: str) -> TrackView:
    obs_rows = tuple(ObservationRow(o.study_date, o.study_instance_uid, o.longest_diameter_mm, o.volume_mm3,
                                    o.composition.value.replace("_", "-"), o.margin.value,
                                    o.lobe.value if o.lobe else None, o.ai_malignancy_probability)
                     for o in track.observations)
    diam = [Point(o.study_date, o.longest_diameter_mm, format_mm(o.longest_diameter_mm))
            for o in track.observations if o.longest_diameter_mm is not None]
    vol = [Point(o.study_date, o.volume_mm3, format_mm3(o.volume_mm3))
           for o in track.observations if o.volume_mm3 is not None]
    key = key_image_observation(track)
    cat = categories.get(track.track_id)
    if cat is None:
        uids = {o.tracking_uid for o in track.observations if o.tracking_uid}
        cat = next((c for c in categories.values() if c.tracking_uid and c.tracking_uid in uids), None)
    uid = track.latest.tracking_uid or next((o.tracking_uid for o in track.observations if o.tracking_uid), None)
    g = track.growth
    return TrackView(
        number=number, track_id=track.track_id, label=label, tracking_uid=uid, status=track.status.value,
        linkage=track.linkage.value.replace("_", " "), observations=obs_rows,
        diameter_chart=time_series_svg(diam, title=f"{label}: diameter over time", unit="mm",
                                       chart_id=f"diam-{number}"),
        volume_chart=time_series_svg(vol, title=f"{label}: volume over time", unit="mm³",
                                     chart_id=f"vol-{number}"),
        growth=g, growth_label=GROWTH_LABELS.get(g.category) if g else None,
        growth_description=g.description if g else None, vdt_days=g.vdt_days if g else None,
        category=_category_row(cat, {track.track_id: label}) if cat else None, has_key_image=key is not None,
        key_image_date=key.study_date if key else None,
        selected=selected_uid is not None and selected_uid in {o.tracking_uid for o in track.observations},
        notes=track.notes)


def timeline_view(snapshot: PatientSnapshot, assessment: Assessment,
                  selected_tracking_uid: str | None = None) -> tuple[TrackView, ...]:
    categories = {c.track_id: c for c in assessment.nodule_categories}
    labels = nodule_labels(snapshot)
    views = [_track_view(i + 1, t, categories, selected_tracking_uid, labels[t.track_id])
             for i, t in enumerate(snapshot.nodule_tracks)]
    # the nodule a CDS card pointed at comes first
    views.sort(key=lambda v: (not v.selected, v.number))
    return tuple(views)


def track_by_number(snapshot: PatientSnapshot, number: int) -> NoduleTrack | None:
    if 1 <= number <= len(snapshot.nodule_tracks):
        return snapshot.nodule_tracks[number - 1]
    return None


# --- explanation ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ContributionView:
    model: str
    subject: str | None
    """The nodule (label) a nodule-level estimate is about."""
    model_version: str
    probability_text: str
    chart: Markup
    rows: tuple[tuple[str, float, str], ...]


@dataclass(frozen=True, slots=True)
class SourceLink:
    number: int
    """1-based index into the assessment's sources; /app/source/<number> shows it (no ids in URLs)."""
    kind: str
    reference: str
    effective: date | None
    viewable: bool


@dataclass(frozen=True, slots=True)
class StudyRow:
    study_instance_uid: str
    modality: str
    started: date | None
    description: str | None


@dataclass(frozen=True, slots=True)
class ExplanationView:
    contributions: tuple[ContributionView, ...]
    missing: tuple[str, ...]
    abstentions: tuple[Abstention, ...]
    sources: tuple[SourceLink, ...]
    studies: tuple[StudyRow, ...]
    model_versions: tuple[tuple[str, str], ...]


def missing_data(snapshot: PatientSnapshot, assessment: Assessment) -> tuple[str, ...]:
    """Inputs the models read that the record did not provide (each would change the estimate)."""
    out: list[str] = []
    for g in assessment.data_gaps:
        out.append(f"{g.what}: {g.reason}")
    for r in assessment.risks:
        if r.imputed:
            out.append(f"{model_label(r.model)} used documented defaults for: {', '.join(r.imputed)}")
    for e in assessment.eligibility:
        for m in e.missing_inputs:
            text = f"{m} (needed for {PROGRAM_LABELS.get(e.program, str(e.program))} eligibility)"
            if text not in out:
                out.append(text)
    sm = snapshot.smoking
    if sm is None or sm.status is SmokingStatus.UNKNOWN:
        out.append("Smoking status (PLCOm2012 and every eligibility rule need it)")
    elif sm.status.ever_smoker:
        if sm.cigarettes_per_day is None:
            out.append("Cigarettes per day (PLCOm2012 smoking intensity)")
        if sm.smoking_duration_years is None:
            out.append("Years smoked (PLCOm2012 smoking duration)")
        if sm.pack_years is None:
            out.append("Pack-years (eligibility)")
        if sm.status is SmokingStatus.FORMER and sm.quit_date is None:
            out.append("Quit date (PLCOm2012 years since quitting; eligibility)")
    if snapshot.education is None:
        out.append("Highest education level (PLCOm2012)")
    if snapshot.bmi is None:
        out.append("Body-mass index (PLCOm2012)")
    if snapshot.demographics is None:
        out.append("Date of birth and sex")
    elif snapshot.demographics.race_ethnicity is None:
        out.append("Race/ethnicity (PLCOm2012)")
    for s in snapshot.source_status:
        if s.state in (SourceState.UNAVAILABLE, SourceState.PARTIAL):
            out.append(f"{s.system} could not be read completely: conditions, history and imaging from it "
                       "may be missing")
    labels = nodule_labels(snapshot)
    for t in snapshot.nodule_tracks:
        if t.latest.volume_mm3 is None:
            out.append(f"{labels[t.track_id]}: measured volume (volume doubling time uses diameters instead)")
        if t.latest.composition.value == "unknown":
            out.append(f"{labels[t.track_id]}: composition (solid / part-solid / ground-glass)")
    return tuple(out)


def source_links(assessment: Assessment) -> tuple[SourceLink, ...]:
    return tuple(SourceLink(i + 1, s.kind.value, s.reference, s.effective,
                            s.kind is SourceKind.FHIR and "/" in s.reference and "://" not in s.reference)
                 for i, s in enumerate(assessment.provenance.sources))


def source_by_number(assessment: Assessment, number: int) -> SourceRef | None:
    if 1 <= number <= len(assessment.provenance.sources):
        return assessment.provenance.sources[number - 1]
    return None


def explanation_view(snapshot: PatientSnapshot, assessment: Assessment) -> ExplanationView:
    contribs = []
    labels = nodule_labels(snapshot)
    for i, r in enumerate(assessment.risks):
        if not r.contributions:
            continue
        ordered = sorted(r.contributions, key=lambda c: abs(c.contribution), reverse=True)
        bars = [Bar(humanize(c.feature), c.contribution) for c in ordered[:12]]
        subject = None if r.subject is None else labels.get(r.subject, r.subject)
        about = f" for {subject}" if subject else ""
        contribs.append(ContributionView(
            model=r.model, subject=subject, model_version=r.model_version, probability_text=format_pct(r.probability),
            chart=contribution_bars_svg(bars, title=f"What drove the {model_label(r.model)} estimate{about}",
                                        chart_id=f"contrib-{i}"),
            rows=tuple((humanize(c.feature), c.contribution, c.description) for c in ordered)))
    studies = tuple(StudyRow(s.study_instance_uid, s.modality, s.started, s.description)
                    for s in sorted(snapshot.imaging_studies, key=lambda s: s.started or date.min, reverse=True))
    return ExplanationView(contributions=tuple(contribs), missing=missing_data(snapshot, assessment),
                           abstentions=assessment.abstentions, sources=source_links(assessment), studies=studies,
                           model_versions=assessment.provenance.model_versions)
