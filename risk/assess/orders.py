"""Checks of a proposed chest CT order against the assessment (order-select / order-sign).

For each chest CT order the checks are, in this order:

* **duplicate imaging**: a chest CT performed within ``policy.duplicate_ct_window_days`` of the order date, or
  another chest CT order in the same order session;
* **screening eligibility** (screening LDCT orders only): not eligible under any program → say why; cannot be
  told → say what is missing; eligible and no chest CT on record (a first screen) → the CMS shared
  decision-making visit is required first;
* **timing against the guideline**: the patient's next imaging recommendation (nodule follow-up, or annual
  screening) compared with the order date: before the window opens → *too early*; within the window → *due*;
  after the overdue date → *overdue* (the order closes a gap).

An order that none of these concern yields no finding (the CDS service answers ``{"cards": []}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from risk.assess.eligibility import PROGRAM_LABELS
from risk.assess.nodules import chest_ct_studies
from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy
from risk.domain.assessment import (
    Assessment,
    EligibilityDecision,
    Recommendation,
    RecommendationKind,
    ScreeningProgram,
)
from risk.domain.snapshot import PatientSnapshot


class OrderKind(StrEnum):
    SCREENING_LDCT = "screening_ldct"
    """CPT 71271 / HCPCS G0297."""
    CHEST_CT = "chest_ct"
    """Any other chest CT (CPT 71250/71260/71270, LOINC CT chest)."""


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    """A chest CT order found in ``context.draftOrders``."""

    reference: str
    """``ServiceRequest/<id>`` as named in the draft orders."""
    kind: OrderKind
    code_display: str
    order_date: date
    """The requested date (``occurrence[x]``), else the assessment date."""


class OrderFindingKind(StrEnum):
    DUPLICATE = "duplicate"
    NOT_ELIGIBLE = "not_eligible"
    ELIGIBILITY_UNKNOWN = "eligibility_unknown"
    SHARED_DECISION_REQUIRED = "shared_decision_required"
    TOO_EARLY = "too_early"
    DUE = "due"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class OrderFinding:
    kind: OrderFindingKind
    order: ProposedOrder
    text: str
    """One sentence for the card summary (short)."""
    detail: str
    """The reasoning, with dates and the guideline."""
    recommendation: Recommendation | None = None
    related_date: date | None = None
    duplicate_of: str | None = None
    """The other draft order (``ServiceRequest/<id>``) when the duplicate is within the session."""


_IMAGING_KINDS = (RecommendationKind.SCREENING_LDCT, RecommendationKind.FOLLOW_UP_LDCT,
                  RecommendationKind.FOLLOW_UP_CT, RecommendationKind.DIAGNOSTIC_WORKUP)


def next_imaging(assessment: Assessment) -> Recommendation | None:
    """The imaging recommendation due soonest (nodule follow-up before annual screening)."""
    candidates = [r for r in assessment.recommendations if r.kind in _IMAGING_KINDS and r.due_date is not None]
    return min(candidates, key=lambda r: (r.due_date, r.kind is RecommendationKind.SCREENING_LDCT), default=None)


def check_order(assessment: Assessment, snapshot: PatientSnapshot, order: ProposedOrder, *,
                session_orders: tuple[ProposedOrder, ...] = (),
                policy: AssessmentPolicy = DEFAULT_POLICY) -> tuple[OrderFinding, ...]:
    findings: list[OrderFinding] = []
    day = order.order_date
    # duplicate imaging
    recent = [s.started for s in chest_ct_studies(snapshot, policy)
              if s.started is not None and 0 <= (day - s.started).days <= policy.duplicate_ct_window_days]
    if recent:
        when = max(recent)
        findings.append(OrderFinding(
            OrderFindingKind.DUPLICATE, order, f"Chest CT already done {when.isoformat()}",
            f"A chest CT was performed on {when.isoformat()}, {(day - when).days} days before this order "
            f"(duplicate window {policy.duplicate_ct_window_days} days).", related_date=when))
    for other in session_orders:
        if other.reference != order.reference and other.reference < order.reference:
            findings.append(OrderFinding(
                OrderFindingKind.DUPLICATE, order, "Two chest CT orders in this session",
                f"{other.reference} ({other.code_display}) is also being ordered.", duplicate_of=other.reference))
            break
    # screening eligibility
    if order.kind is OrderKind.SCREENING_LDCT:
        decisions = assessment.eligibility
        eligible = [d for d in decisions if d.eligible]
        if not eligible:
            unknown = [d for d in decisions if d.eligible is None]
            if unknown:
                missing = sorted({m for d in unknown for m in d.missing_inputs})
                findings.append(OrderFinding(
                    OrderFindingKind.ELIGIBILITY_UNKNOWN, order, "Screening eligibility cannot be confirmed",
                    "Missing: " + ", ".join(missing) + ". " + _reasons(decisions)))
            else:
                findings.append(OrderFinding(
                    OrderFindingKind.NOT_ELIGIBLE, order, "Does not meet lung screening criteria",
                    _reasons(decisions)))
        elif assessment.last_ct_date is None:
            cms = any(d.program is ScreeningProgram.CMS_2022 and d.eligible for d in decisions)
            findings.append(OrderFinding(
                OrderFindingKind.SHARED_DECISION_REQUIRED, order, "First screen: shared decision-making visit needed",
                "No prior chest CT is on record, so this is a first screening LDCT. "
                + ("CMS NCD 210.14 requires a counselling and shared decision-making visit (HCPCS G0296) with a "
                   "decision aid before it." if cms else
                   "A shared decision-making conversation is recommended before the first screen (USPSTF 2021).")))
    # timing
    rec = next_imaging(assessment)
    if rec is not None and rec.due_date is not None:
        start = rec.window_start or rec.due_date
        overdue = rec.overdue_after
        if day < start:
            findings.append(OrderFinding(
                OrderFindingKind.TOO_EARLY, order, f"Too early: {rec.text.lower()} due {rec.due_date.isoformat()}",
                f"{rec.text} is due on {rec.due_date.isoformat()} (not before {start.isoformat()}) per "
                f"{rec.basis}; this order is {(start - day).days} days early.", recommendation=rec,
                related_date=rec.due_date))
        elif overdue is not None and day > overdue:
            findings.append(OrderFinding(
                OrderFindingKind.OVERDUE, order, f"Overdue follow-up: was due {rec.due_date.isoformat()}",
                f"{rec.text} was due on {rec.due_date.isoformat()} per {rec.basis}; it is {(day - overdue).days} "
                f"days past the overdue date {overdue.isoformat()}. This order closes the gap.",
                recommendation=rec, related_date=rec.due_date))
        else:
            findings.append(OrderFinding(
                OrderFindingKind.DUE, order, f"Timely: {rec.text.lower()} due {rec.due_date.isoformat()}",
                f"{rec.text} is due on {rec.due_date.isoformat()} per {rec.basis}; this order falls within the "
                "guideline window.", recommendation=rec, related_date=rec.due_date))
    return tuple(findings)


def _reasons(decisions: tuple[EligibilityDecision, ...]) -> str:
    return " ".join(f"{PROGRAM_LABELS[d.program]}: {d.reason}." for d in decisions)
