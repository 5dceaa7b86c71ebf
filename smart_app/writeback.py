"""Write-back from the app: RiskAssessment(s) and a draft follow-up ServiceRequest.

The resources are built by the project's FHIR builders (:mod:`risk.outputs.riskassessment`,
:mod:`risk.outputs.servicerequest`) and validated with ``fhir.resources.R4B`` before anything is sent; the app
only chooses what to build from the :class:`~risk.domain.Assessment` it shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from risk.domain import Assessment, PatientSnapshot, Recommendation, RecommendationKind, SourceKind
from risk.outputs.riskassessment import build_risk_assessment
from risk.outputs.servicerequest import ImagingOrderKind, build_service_request, screening_order_note

ORDERABLE = {
    RecommendationKind.SCREENING_LDCT: ImagingOrderKind.SCREENING_LDCT,
    RecommendationKind.FOLLOW_UP_LDCT: ImagingOrderKind.FOLLOW_UP_CT,
    RecommendationKind.FOLLOW_UP_CT: ImagingOrderKind.FOLLOW_UP_CT,
    RecommendationKind.SHARED_DECISION_MAKING: ImagingOrderKind.SHARED_DECISION_VISIT,
}
"""Recommendation kinds the app can draft an order for (diagnostic work-up is a referral, not an order)."""


def _json(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return data


def risk_assessment_resources(assessment: Assessment) -> list[dict[str, Any]]:
    """One validated RiskAssessment per estimate, patient-level estimates first."""
    ordered = sorted(assessment.risks, key=lambda r: (r.subject is not None, r.subject or "", r.model))
    return [_json(build_risk_assessment(assessment, r)) for r in ordered]


def orderable_recommendation(assessment: Assessment) -> Recommendation | None:
    """The first recommendation that maps to an imaging order (or an SDM visit)."""
    for rec in assessment.recommendations:
        if rec.kind in ORDERABLE:
            return rec
    return None


@dataclass(frozen=True, slots=True)
class DraftOrder:
    recommendation: Recommendation
    kind: ImagingOrderKind
    resource: dict[str, Any]

    @property
    def summary(self) -> str:
        when = ""
        if self.recommendation.due_date is not None:
            when = f", due {self.recommendation.due_date.isoformat()}"
        return f"{self.recommendation.text}{when} ({self.recommendation.basis})."


def draft_service_request(snapshot: PatientSnapshot, assessment: Assessment, *, requester: str | None = None,
                          encounter_id: str | None = None,
                          reason_references: tuple[str, ...] = ()) -> DraftOrder | None:
    """A validated draft ServiceRequest (status draft, intent proposal) for the assessment's recommendation."""
    rec = orderable_recommendation(assessment)
    if rec is None:
        return None
    kind = ORDERABLE[rec.kind]
    supporting = []
    if snapshot.smoking is not None:
        supporting += [s.reference for s in snapshot.smoking.sources if s.kind is SourceKind.FHIR]
    supporting += [s.source.reference for s in snapshot.ct_studies if s.source.kind is SourceKind.FHIR]
    note = None
    if kind is ImagingOrderKind.SCREENING_LDCT:
        sm = snapshot.smoking
        note = screening_order_note(pack_years=sm.pack_years if sm else None, status=sm.status if sm else None,
                                    years_since_quit=sm.years_since_quit(assessment.as_of) if sm else None)
    elif kind is ImagingOrderKind.FOLLOW_UP_CT:
        note = f"{rec.text}. Low-dose technique. Basis: {rec.basis}."
    window = None
    if rec.window_start is not None and rec.due_date is not None and rec.window_start <= rec.due_date:
        window = (rec.window_start, rec.due_date)
    model = build_service_request(
        assessment.patient_id, kind,
        occurrence=rec.due_date if window is None else None,
        occurrence_window=window,
        reason_text=f"{rec.text} ({rec.basis})",
        reason_references=reason_references,
        supporting_info=tuple(dict.fromkeys(supporting)),
        note=note,
        requester=requester if requester and requester.split("/")[0] in ("Practitioner", "PractitionerRole") else None,
        encounter=f"Encounter/{encounter_id}" if encounter_id else None,
        authored_on=datetime.now(UTC).replace(microsecond=0),
    )
    return DraftOrder(rec, kind, _json(model))
