"""CDS Hooks 2.0 cards rendered from an Assessment (and, for order hooks, from order findings).

Cards are plain dicts serialised with orjson (no model validation on the hot path); tests validate every response
against the CDS Hooks 2.0 JSON Schemas and every embedded FHIR resource with fhir.resources. No element is ever
null or empty: optional fields are left out.

**Indicator policy**

* ``critical``: an *overdue* follow-up of a suspicious nodule — Lung-RADS 4A, 4B or 4X, a work-up
  recommendation, or a Fleischner solid nodule > 8 mm.
* ``warning``: any other nodule follow-up that is due or overdue; annual screening that is overdue; high risk of
  a patient who meets no screening program's criteria (the risk model speaks where the criteria are silent: an
  eligible patient's risk is shown in the screening card, and needs no card of its own when screening is up to
  date); rising risk (a nodule that grew) when no nodule card already shows it; an order that duplicates recent
  imaging, comes too early for the guideline, is a screening LDCT for someone who does not meet any program's
  criteria, or is a first screen without the shared decision-making visit CMS requires.
* ``info``: screening due (not overdue) or never done; an order that is on time or closes an overdue gap;
  eligibility that cannot be confirmed; "could not check" notices (a card of their own only when no other card is
  shown; otherwise every card lists what could not be checked).

With the fusion model loaded, its probability is the headline risk (the published models stay in the detail);
until then PLCOm2012 is.

**Content.** ``summary`` is one sentence under 140 characters. ``detail`` (GitHub-flavoured Markdown) gives the
key numbers in a table, the dates of the data behind them (stale data flagged ⚠ with its age limit), what could
not be checked, and the model and guideline versions. Cards with an action carry ``suggestions`` (draft
ServiceRequests built by :mod:`risk.outputs.servicerequest`; an order check may suggest deleting or re-dating the
draft order) with ``selectionBehavior``. Warning and critical cards carry ``overrideReasons`` (each with a
display). Every card has a ``smart`` link to the app's launch URL whose ``appContext`` is a JSON string
``{"assessmentId": <id>, "patient": <id>, "view": overview|timeline|explanation|actions, "trackId": <track>,
"trackingUid": <DICOM tracking UID>}`` (track keys when the card is about a nodule; read by
risk.smart.launch.parse_app_context). Card and suggestion ``uuid``s are fresh UUID4s, persisted for feedback.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from risk import codes
from risk.assess.orders import OrderFinding, OrderFindingKind, ProposedOrder
from risk.codes import Code
from risk.domain.assessment import (
    Assessment,
    DueStatus,
    NoduleCategory,
    Recommendation,
    RecommendationKind,
    RiskEstimate,
    RiskFlagKind,
    model_label,
)
from risk.domain.provenance import SourceKind
from risk.domain.smoking import SmokingStatus
from risk.domain.snapshot import PatientSnapshot
from risk.outputs.riskassessment import risk_assessment_json
from risk.outputs.servicerequest import (
    ImagingOrderKind,
    screening_order_note,
    screening_reason_codes,
    service_request_json,
)

SUMMARY_LIMIT = 140
_RNG = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _RNG.seed(os.urandom(32)))  # forked workers never share a sequence
_UUID_FIXED_BITS = 0xF000 << 64 | 0xC000 << 48
_UUID_V4_BITS = 4 << 76 | 0x8000 << 48
"""RFC 9562: the version nibble (4) and the variant bits (10) of a random UUID; the other 122 bits are random."""


def new_uuid() -> str:
    """A random (version 4) UUID for a card or suggestion: 122 random bits from a per-process generator seeded from
    the OS (uuid.uuid4 reads the OS entropy source on every call, a measurable cost per card on the hot path)."""
    bits = _RNG.getrandbits(128) & ~_UUID_FIXED_BITS | _UUID_V4_BITS
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"  # str(uuid.UUID(int=bits)), without the object


SUSPICIOUS_CATEGORIES = frozenset({"4A", "4B", "4X", "4AS", "4BS", "4XS"})
NODULE_FOLLOW_UP_KINDS = (RecommendationKind.FOLLOW_UP_LDCT, RecommendationKind.FOLLOW_UP_CT,
                          RecommendationKind.DIAGNOSTIC_WORKUP)
GUIDELINE_LINKS = {
    "uspstf": ("USPSTF 2021 lung cancer screening",
               "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/lung-cancer-screening"),
    "lungrads": ("ACR Lung-RADS v2022", "https://www.acr.org/Clinical-Resources/Reporting-and-Data-Systems/Lung-Rads"),
}
OVERRIDES_SCREENING = (codes.OVERRIDE_ALREADY_SCHEDULED, codes.OVERRIDE_PATIENT_DECLINED,
                       codes.OVERRIDE_LIMITED_LIFE_EXPECTANCY, codes.OVERRIDE_DATA_INCORRECT)
OVERRIDES_NODULE = (codes.OVERRIDE_ALREADY_SCHEDULED, codes.OVERRIDE_SPECIALIST_CARE,
                    codes.OVERRIDE_PATIENT_DECLINED, codes.OVERRIDE_DATA_INCORRECT)
OVERRIDES_RISK = (codes.OVERRIDE_CLINICAL_JUDGEMENT, codes.OVERRIDE_SPECIALIST_CARE, codes.OVERRIDE_DATA_INCORRECT)
OVERRIDES_ORDER = (codes.OVERRIDE_CLINICAL_INDICATION, codes.OVERRIDE_CLINICAL_JUDGEMENT,
                   codes.OVERRIDE_DATA_INCORRECT)
OVERRIDES_SDM = (codes.OVERRIDE_ALREADY_SCHEDULED, codes.OVERRIDE_CLINICAL_JUDGEMENT)


@dataclass(frozen=True, slots=True)
class CardSettings:
    """What the cards need from the service's settings."""

    base_url: str
    source_label: str = "Lung Risk Service"
    synthetic_data: bool = False
    system_actions: bool = False

    @property
    def launch_url(self) -> str:
        return f"{self.base_url}/app/launch"


@dataclass(slots=True)
class IssuedCard:
    """A rendered card plus what the ledger keeps for feedback."""

    card: dict[str, Any]
    card_type: Code
    suggestions: list[dict[str, str]] = field(default_factory=list)

    @property
    def uuid(self) -> str:
        return str(self.card["uuid"])

    @property
    def indicator(self) -> str:
        return str(self.card["indicator"])


# --- shared pieces -------------------------------------------------------------------------------------------
def summary(text: str) -> str:
    """One line under 140 characters (cut at a word with an ellipsis when longer)."""
    text = " ".join(text.split())
    if len(text) < SUMMARY_LIMIT:
        return text
    cut = text[: SUMMARY_LIMIT - 2].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: Iterable[tuple[str, str, str]]) -> str:
    lines = ["| | Value | Date |", "|---|---|---|"]
    lines.extend(f"| {_cell(a)} | {_cell(b)} | {_cell(c) if c else '—'} |" for a, b, c in rows)
    return "\n".join(lines)


def _pct(p: float) -> str:
    return f"{p * 100:.1f}%" if p >= 0.001 else f"{p * 100:.2f}%"


class _Renderer:
    def __init__(self, assessment: Assessment, snapshot: PatientSnapshot, cs: CardSettings) -> None:
        self.a = assessment
        self.s = snapshot
        self.cs = cs
        self.stale = {st.what: st for st in assessment.provenance.stale}

    # context and links
    def app_link(self, track: NoduleCategory | None = None, view: str = "overview",
                 label: str = "Open lung risk details") -> dict[str, Any]:
        context: dict[str, str] = {"assessmentId": self.a.assessment_id, "patient": self.a.patient_id, "view": view}
        if track is not None:
            context["trackId"] = track.track_id
            if track.tracking_uid:
                context["trackingUid"] = track.tracking_uid
        return {"label": label, "url": self.cs.launch_url, "type": "smart",
                "appContext": orjson.dumps(context).decode()}

    def card(self, card_type: Code, indicator: str, text: str, detail: str, *,
             suggestions: Sequence[dict[str, Any]] = (), overrides: Sequence[Code] = (),
             track: NoduleCategory | None = None, selection: str = "at-most-one",
             extra_links: Sequence[tuple[str, str]] = (), view: str = "overview") -> IssuedCard:
        out: dict[str, Any] = {
            "uuid": new_uuid(),
            "summary": summary(text),
            "detail": detail,
            "indicator": indicator,
            "source": {"label": self.cs.source_label, "url": self.cs.base_url,
                       "topic": {"system": card_type.system, "code": card_type.code, "display": card_type.display}},
        }
        kept = []
        if suggestions:
            out["selectionBehavior"] = selection
            out["suggestions"] = list(suggestions)
            kept = [{"uuid": s["uuid"], "label": s["label"]} for s in suggestions]
        if overrides:
            out["overrideReasons"] = [c.coding() for c in overrides]
        links = [self.app_link(track, view)]
        links.extend({"label": label, "url": url, "type": "absolute"} for label, url in extra_links)
        out["links"] = links
        return IssuedCard(out, card_type, kept)

    # detail sections
    def data_rows(self) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        s = self.s
        if s.age_years is not None:
            rows.append(("Age", f"{s.age_years} years", ""))
        smk = s.smoking
        if smk is not None:
            parts = [smk.status.value]
            if smk.pack_years is not None and smk.status is not SmokingStatus.NEVER:
                parts.append(f"{smk.pack_years:.0f} pack-years" + (" (derived)" if smk.pack_years_derived else ""))
            quit_years = smk.years_since_quit(s.as_of)
            if smk.status is SmokingStatus.FORMER and quit_years is not None:
                parts.append(f"quit {quit_years:.0f} years ago")
            rows.append(("Smoking", ", ".join(parts), self.dated("smoking history", smk.effective)))
        else:
            rows.append(("Smoking", "not recorded", ""))
        if s.bmi is not None:
            rows.append(("BMI", f"{s.bmi.value:.1f} kg/m²", self.dated("BMI", s.bmi.effective)))
        if self.a.last_ct_date is not None:
            rows.append(("Latest chest CT", self.a.last_ct_date.isoformat(),
                         self.dated("latest chest CT", self.a.last_ct_date)))
        for r in self.a.risks:
            if r.subject is None:
                horizon = f"{r.horizon_years:g}-year " if r.horizon_years else ""
                label = f"{model_label(r.model)} {horizon}risk"
                value = _pct(r.probability) + (f" ({_pct(r.interval[0])}–{_pct(r.interval[1])})" if r.interval else "")
                if r.trained_on_synthetic_data:
                    value += " — trained on synthetic data"
                rows.append((label, value, self.a.as_of.isoformat()))
        return rows

    def dated(self, what: str, day: date | None) -> str:
        if day is None:
            return "date unknown"
        st = self.stale.get(what)
        return f"{day.isoformat()} ⚠ stale (> {st.limit_days} days)" if st is not None else day.isoformat()

    def footer(self) -> str:
        parts = []
        gaps = self.a.data_gaps
        if gaps:
            parts.append("**Could not be checked:** " + "; ".join(f"{g.what}: {g.reason}" for g in gaps))
        if self.a.provenance.stale:
            parts.append("**Stale data:** " + "; ".join(
                f"{st.what} from {st.effective.isoformat()} (older than {st.limit_days} days)"
                for st in self.a.provenance.stale))
        imputed = [f"{model_label(r.model)}: {', '.join(r.imputed)}" for r in self.a.risks if r.imputed]
        if imputed:
            parts.append("**Defaults used for missing inputs:** " + "; ".join(imputed))
        models = ", ".join(f"{m} {v}" for m, v in self.a.provenance.model_versions)
        parts.append(f"**Models and guidelines:** {models}. Assessed {self.a.as_of.isoformat()}.")
        if self.cs.synthetic_data:
            parts.append("_Demo deployment on synthetic data: not for clinical use._")
        return "\n\n".join(parts)

    def imaging_refs(self, study_date: date | None) -> list[str]:
        refs = [src.reference for src in self.a.provenance.sources
                if src.kind is SourceKind.FHIR and src.reference.startswith("ImagingStudy/")
                and (study_date is None or src.effective == study_date)]
        return refs[:5]

    def smoking_refs(self) -> list[str]:
        if self.s.smoking is None:
            return []
        return [src.reference for src in self.s.smoking.sources
                if src.kind is SourceKind.FHIR and "/" in src.reference and not src.reference.startswith("urn:")]

    def suggestion(self, label: str, actions: list[dict[str, Any]], recommended: bool = True) -> dict[str, Any]:
        return {"label": label, "uuid": new_uuid(), "isRecommended": recommended, "actions": actions}

    def create_order(self, kind: ImagingOrderKind, description: str, rec: Recommendation | None,
                     study_date: date | None = None, reason_text: str | None = None) -> dict[str, Any]:
        window = None
        if rec is not None and rec.window_start is not None and rec.overdue_after is not None \
                and rec.status is DueStatus.NOT_YET_DUE:
            window = (rec.window_start, rec.overdue_after)
        smk = self.s.smoking
        if kind is ImagingOrderKind.SCREENING_LDCT:
            resource = service_request_json(
                self.a.patient_id, kind, occurrence_window=window,
                reason_codes=screening_reason_codes(smk.status if smk else None),
                reason_text=reason_text or "Lung cancer screening",
                supporting_info=self.smoking_refs(),
                note=screening_order_note(pack_years=smk.pack_years if smk else None,
                                          status=smk.status if smk else None,
                                          years_since_quit=smk.years_since_quit(self.s.as_of) if smk else None))
        elif kind is ImagingOrderKind.SHARED_DECISION_VISIT:
            resource = service_request_json(
                self.a.patient_id, kind, reason_text="Shared decision-making before a first screening LDCT "
                "(CMS NCD 210.14)", supporting_info=self.smoking_refs())
        else:
            resource = service_request_json(
                self.a.patient_id, kind, occurrence_window=window, reason_text=reason_text,
                supporting_info=self.imaging_refs(study_date),
                note="Low-dose technique requested (nodule follow-up).")
        return {"type": "create", "description": description, "resource": resource}


# --- patient-view --------------------------------------------------------------------------------------------
def patient_view_cards(assessment: Assessment, snapshot: PatientSnapshot, cs: CardSettings) -> list[IssuedCard]:
    r = _Renderer(assessment, snapshot, cs)
    cards: list[IssuedCard] = []
    nodule = _nodule_card(r)
    if nodule is not None:
        cards.append(nodule)
    screening = _screening_card(r)
    if screening is not None:
        cards.append(screening)
    risk = _risk_card(r, has_nodule_card=nodule is not None, has_screening_card=screening is not None)
    if risk is not None:
        cards.append(risk)
    if not cards and assessment.data_gaps:
        cards.append(_gaps_card(r))
    return cards


def _category_of(a: Assessment, track_id: str | None) -> NoduleCategory | None:
    if track_id is None:
        return a.patient_category
    if a.patient_category is not None and a.patient_category.track_id == track_id:
        return a.patient_category
    return next((c for c in a.nodule_categories if c.track_id == track_id), None)


def _suspicious(a: Assessment, rec: Recommendation) -> bool:
    if rec.kind is RecommendationKind.DIAGNOSTIC_WORKUP:
        return True
    cat = _category_of(a, rec.track_id)
    if cat is None:
        return False
    return cat.category.upper() in SUSPICIOUS_CATEGORIES or (">8" in cat.category and "solid" in cat.category)


def _nodule_card(r: _Renderer) -> IssuedCard | None:
    a = r.a
    due = [rec for rec in a.recommendations if rec.kind in NODULE_FOLLOW_UP_KINDS
           and rec.status in (DueStatus.DUE, DueStatus.OVERDUE) and not (rec.optional and rec.status is DueStatus.DUE)]
    if not due:
        return None
    due.sort(key=lambda rec: (rec.status is not DueStatus.OVERDUE, not _suspicious(a, rec), rec.due_date or date.max))
    top = due[0]
    cat = _category_of(a, top.track_id)
    overdue = top.status is DueStatus.OVERDUE
    indicator = "critical" if overdue and _suspicious(a, top) else "warning"
    guideline = f"{cat.guideline} {cat.category}" if cat is not None else top.basis
    when = f"overdue since {top.overdue_after.isoformat()}" if overdue and top.overdue_after else \
        f"due {top.due_date.isoformat()}" if top.due_date else "due"
    nodule_words = cat.description.split(" (")[0] if cat is not None and cat.description else "nodule"
    text = f"Nodule follow-up {when}: {nodule_words}, {guideline} — {top.text.lower()}"
    rows = []
    for rec in due:
        c = _category_of(a, rec.track_id)
        status = rec.status.value.replace("_", " ")
        window = (f"{rec.window_start.isoformat()} to {rec.overdue_after.isoformat()}"
                  if rec.window_start and rec.overdue_after else "")
        rows.append((f"Nodule {rec.track_id}" if rec.track_id else "Nodules",
                     f"{c.guideline} {c.category}: {c.description}" if c is not None else rec.basis,
                     c.study_date.isoformat() if c is not None and c.study_date else ""))
        rows.append((f"→ {rec.text}", f"{status}; window {window}" if window else status,
                     rec.due_date.isoformat() if rec.due_date else ""))
    for risk in a.risks:
        if risk.subject in {rec.track_id for rec in due}:
            rows.append((f"Brock malignancy ({risk.subject})", _pct(risk.probability), ""))
    rising = [f.reason for f in a.risk_flags if f.kind is RiskFlagKind.RISING]
    detail = "\n\n".join(filter(None, [
        f"**{top.text}** per {top.basis}.",
        _table(rows + r.data_rows()),
        ("**Growth:** " + "; ".join(rising)) if rising else "",
        r.footer(),
    ]))
    suggestions = []
    if top.kind is not RecommendationKind.DIAGNOSTIC_WORKUP:
        kind = ImagingOrderKind.FOLLOW_UP_CT
        label = f"Order follow-up chest CT ({top.text.lower()})"
        suggestions.append(r.suggestion(label, [r.create_order(
            kind, f"Draft ServiceRequest: chest CT without contrast, low-dose technique (CPT "
            f"{codes.CPT_CT_CHEST_WITHOUT_CONTRAST.code})", top, cat.study_date if cat else None,
            reason_text=f"Pulmonary nodule follow-up: {guideline}")]))
    links = [GUIDELINE_LINKS["lungrads"]] if cat is not None and cat.guideline.startswith("Lung-RADS") else []
    return r.card(codes.CARD_NODULE_FOLLOW_UP, indicator, text, detail, suggestions=suggestions,
                  overrides=OVERRIDES_NODULE, track=cat, extra_links=links, view="timeline")


def _screening_card(r: _Renderer) -> IssuedCard | None:
    a = r.a
    rec = next((x for x in a.recommendations if x.kind is RecommendationKind.SCREENING_LDCT
                and x.status in (DueStatus.DUE, DueStatus.OVERDUE)), None)
    if rec is None:
        return None
    sdm = next((x for x in a.recommendations if x.kind is RecommendationKind.SHARED_DECISION_MAKING), None)
    programs = [d for d in a.eligibility if d.eligible]
    overdue = rec.status is DueStatus.OVERDUE
    if a.last_ct_date is None:
        text = "Eligible for lung cancer screening; no LDCT on record"
    elif overdue:
        text = f"Annual lung cancer screening overdue (last chest CT {a.last_ct_date.isoformat()})"
    else:
        text = f"Annual lung cancer screening LDCT due (last chest CT {a.last_ct_date.isoformat()})"
    if a.patient_category is not None and a.patient_category.guideline.startswith("Lung-RADS"):
        text += f", Lung-RADS {a.patient_category.category}"
    rows = [(f"Eligible: {d.program.value.replace('_', ' ').upper()}", d.reason.split(". ")[0], "")
            for d in programs]
    rows.append(("Next screening LDCT", f"{rec.status.value.replace('_', ' ')}",
                 rec.due_date.isoformat() if rec.due_date else ""))
    detail = "\n\n".join(filter(None, [
        f"**{rec.text}**: {rec.basis}.",
        _table(rows + r.data_rows()),
        ("**First screen:** CMS requires a shared decision-making visit (HCPCS G0296) with a decision aid before "
         "the first LDCT.") if sdm is not None else "",
        r.footer(),
    ]))
    suggestions = [r.suggestion("Order screening LDCT (CPT 71271)", [r.create_order(
        ImagingOrderKind.SCREENING_LDCT, "Draft ServiceRequest: low-dose CT for lung cancer screening (CPT 71271)",
        rec)])]
    if sdm is not None:
        suggestions.insert(0, r.suggestion("Order shared decision-making visit (HCPCS G0296)", [r.create_order(
            ImagingOrderKind.SHARED_DECISION_VISIT, "Draft ServiceRequest: lung cancer screening counselling and "
            "shared decision-making visit (HCPCS G0296)", sdm)]))
    return r.card(codes.CARD_SCREENING_DUE, "warning" if overdue else "info", text, detail,
                  suggestions=suggestions, overrides=OVERRIDES_SCREENING, selection="any" if sdm else "at-most-one",
                  extra_links=[GUIDELINE_LINKS["uspstf"]], view="actions")


def _headline(a: Assessment) -> RiskEstimate | None:
    learned = [x for x in a.risks if x.learned and x.subject is None]
    if learned:
        return learned[0]
    return next((x for x in a.risks if x.subject is None), None)


def _risk_card(r: _Renderer, *, has_nodule_card: bool, has_screening_card: bool) -> IssuedCard | None:
    a = r.a
    headline = _headline(a)
    fusion_loaded = headline is not None and headline.learned
    eligible = any(d.eligible for d in a.eligibility)
    flags = []
    for f in a.risk_flags:
        if (f.model or "").startswith("brock"):
            continue  # a nodule's malignancy probability belongs with its follow-up plan (nodule card, app)
        nodule_flag = f.kind is RiskFlagKind.RISING
        if nodule_flag and has_nodule_card:
            continue
        if not nodule_flag and (has_screening_card or eligible):
            continue  # an eligible patient's high risk is handled by screening (shown in the screening card)
        if fusion_loaded and not nodule_flag and f.model != headline.model:  # type: ignore[union-attr]
            continue  # with the fusion model loaded, its risk speaks for the patient
        flags.append(f)
    if not flags:
        return None
    high = [f for f in flags if f.kind is RiskFlagKind.HIGH]
    lead = high[0] if high else flags[0]
    if headline is not None and lead.model == headline.model and headline.subject is None:
        horizon = f"{headline.horizon_years:g}-year " if headline.horizon_years else ""
        text = f"High lung cancer risk: {model_label(headline.model)} {horizon}risk {_pct(headline.probability)}"
    elif lead.kind is RiskFlagKind.RISING:
        text = f"Rising lung cancer risk: {lead.reason}"
    else:
        text = f"High lung cancer risk: {lead.reason}"
    if high and not eligible:
        text += " (screening criteria not met)"
    rows = [("Why", f.reason, "") for f in flags]
    if headline is not None:
        for c in headline.contributions[:4]:
            rows.append((f"Contribution: {c.description}", f"{c.contribution:+.2f} log-odds", ""))
    detail = "\n\n".join([
        "**" + ("Risk from the fusion model" if fusion_loaded else "Risk from published models") + ".** "
        + " ".join(f"{d.program.value}: {d.reason.split('. ')[0]}." for d in a.eligibility),
        _table(rows + r.data_rows()),
        r.footer(),
    ])
    track = None
    for f in flags:
        for cat in a.nodule_categories:
            if cat.track_id in f.reason:
                track = cat
                break
    return r.card(codes.CARD_HIGH_RISK, "warning", text, detail, overrides=OVERRIDES_RISK, track=track,
                  view="explanation")


def _gaps_card(r: _Renderer) -> IssuedCard:
    a = r.a
    first = a.data_gaps[0]
    text = f"Lung cancer risk check incomplete: {first.what} could not be checked"
    detail = "\n\n".join([
        "The service could not check everything it needs; no recommendation is made from partial data.",
        _table([(g.what, g.reason, "") for g in a.data_gaps] + r.data_rows()),
        r.footer(),
    ])
    return r.card(codes.CARD_DATA_GAPS, "info", text, detail)


def system_actions(assessment: Assessment) -> list[dict[str, Any]]:
    """A RiskAssessment ``create`` for the headline estimate (when settings.cds.system_actions is on)."""
    headline = _headline(assessment)
    if headline is None:
        return []
    description = f"Record the {model_label(headline.model)} lung cancer risk as a RiskAssessment"
    return [{"type": "create", "description": description,
             "resource": risk_assessment_json(assessment, headline)}]


# --- order-select / order-sign ---------------------------------------------------------------------------------
_ORDER_CARD = {
    OrderFindingKind.DUPLICATE: (codes.CARD_ORDER_DUPLICATE, "warning", OVERRIDES_ORDER),
    OrderFindingKind.NOT_ELIGIBLE: (codes.CARD_ORDER_ELIGIBILITY, "warning", OVERRIDES_ORDER),
    OrderFindingKind.ELIGIBILITY_UNKNOWN: (codes.CARD_ORDER_ELIGIBILITY, "info", ()),
    OrderFindingKind.SHARED_DECISION_REQUIRED: (codes.CARD_ORDER_SHARED_DECISION, "warning", OVERRIDES_SDM),
    OrderFindingKind.TOO_EARLY: (codes.CARD_ORDER_TIMING, "warning", OVERRIDES_ORDER),
    OrderFindingKind.DUE: (codes.CARD_ORDER_TIMING, "info", ()),
    OrderFindingKind.OVERDUE: (codes.CARD_ORDER_TIMING, "info", ()),
}


def order_cards(findings: Sequence[OrderFinding], assessment: Assessment, snapshot: PatientSnapshot,
                cs: CardSettings, draft: dict[str, dict[str, Any]]) -> list[IssuedCard]:
    """One card per finding; ``draft`` maps an order reference to its draft resource (for update actions)."""
    r = _Renderer(assessment, snapshot, cs)
    cards = []
    for finding in findings:
        card_type, indicator, overrides = _ORDER_CARD[finding.kind]
        order = finding.order
        text = f"{_order_name(order)}: {finding.text}"
        rows = [("Order", f"{order.code_display} ({order.reference})", order.order_date.isoformat())]
        if finding.recommendation is not None:
            rec = finding.recommendation
            rows.append(("Guideline", rec.basis, ""))
            if rec.window_start and rec.overdue_after:
                rows.append(("Window", f"{rec.window_start.isoformat()} to {rec.overdue_after.isoformat()}",
                             rec.due_date.isoformat() if rec.due_date else ""))
        if finding.kind in (OrderFindingKind.NOT_ELIGIBLE, OrderFindingKind.ELIGIBILITY_UNKNOWN):
            rows.extend((d.program.value, d.reason.split(". ")[0], "") for d in assessment.eligibility)
        detail = "\n\n".join([finding.detail, _table(rows + r.data_rows()), r.footer()])
        suggestions = _order_suggestions(r, finding, draft.get(order.reference))
        track = _category_of(assessment, finding.recommendation.track_id) if finding.recommendation else None
        cards.append(r.card(card_type, indicator, text, detail, suggestions=suggestions, overrides=overrides,
                            track=track, view="actions"))
    return cards


def _order_name(order: ProposedOrder) -> str:
    return "Screening LDCT order" if order.kind.value == "screening_ldct" else "Chest CT order"


def _order_suggestions(r: _Renderer, finding: OrderFinding, resource: dict[str, Any] | None
                       ) -> list[dict[str, Any]]:
    order = finding.order
    delete = {"type": "delete", "description": f"Remove the draft order {order.reference}",
              "resourceId": order.reference}
    if finding.kind is OrderFindingKind.DUPLICATE:
        return [r.suggestion("Remove this chest CT order", [delete])]
    if finding.kind is OrderFindingKind.NOT_ELIGIBLE:
        return [r.suggestion("Remove the screening LDCT order", [delete])]
    if finding.kind is OrderFindingKind.SHARED_DECISION_REQUIRED:
        return [r.suggestion("Order shared decision-making visit (HCPCS G0296)", [r.create_order(
            ImagingOrderKind.SHARED_DECISION_VISIT, "Draft ServiceRequest: lung cancer screening counselling and "
            "shared decision-making visit (HCPCS G0296)", None)])]
    if finding.kind is OrderFindingKind.TOO_EARLY and finding.recommendation is not None:
        rec = finding.recommendation
        out = []
        if resource is not None and rec.window_start is not None:
            updated = {k: v for k, v in resource.items() if k not in ("occurrenceDateTime", "occurrencePeriod",
                                                                      "occurrenceTiming")}
            updated["occurrenceDateTime"] = rec.window_start.isoformat()
            out.append(r.suggestion(f"Schedule it from {rec.window_start.isoformat()}", [
                {"type": "update", "description": f"Set the order's date to {rec.window_start.isoformat()}",
                 "resource": updated}]))
        out.append(r.suggestion("Remove this chest CT order", [delete], recommended=not out))
        return out
    return []
