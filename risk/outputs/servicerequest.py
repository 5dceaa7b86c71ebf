"""Draft imaging orders as FHIR R4 ServiceRequest (interop.md §3.8): what a CDS suggestion or the app proposes.

Which code for which order (documented choice):

* **Annual screening LDCT** → CPT 71271 "CT thorax, low dose for lung cancer screening" (effective 2021-01-01;
  it replaced HCPCS G0297). ``reasonCode`` carries the CMS LDCT diagnosis code for the smoking status:
  ICD-10-CM F17.210 (current smoker) or Z87.891 (former smoker).
* **Nodule follow-up CT** (Lung-RADS 3/4A short-interval LDCT, Fleischner follow-up) → CPT 71250 "CT thorax
  without contrast": short-interval follow-up is a diagnostic exam, not an annual screen, so 71271 would be the
  wrong claim; the low-dose technique is asked for in ``note``.
* **Shared decision-making visit** (CMS requires one before the first screening LDCT) → HCPCS G0296.

Every request is ``status: draft`` and ``intent: proposal`` by default (a suggestion the clinician accepts or
not), names the patient, the reason (codes and/or references) and the supporting data (smoking Observations,
the ImagingStudy), and states the CMS written-order elements we know (pack-years, smoking status, years since
quitting) in ``note``.

:func:`service_request_json` builds the plain JSON (cheap: the CDS hot path uses it inside card suggestions);
:func:`build_service_request` returns the same content validated by ``fhir.resources.R4B.ServiceRequest``.
Tests validate every JSON this module emits with the R4B model.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from risk import codes
from risk.codes import Code
from risk.domain.smoking import SmokingStatus
from risk.errors import InvalidInput


class ImagingOrderKind(StrEnum):
    SCREENING_LDCT = "screening_ldct"
    FOLLOW_UP_CT = "follow_up_ct"
    SHARED_DECISION_VISIT = "shared_decision_visit"


ORDER_CODE: dict[ImagingOrderKind, Code] = {
    ImagingOrderKind.SCREENING_LDCT: codes.CPT_LDCT_SCREENING,
    ImagingOrderKind.FOLLOW_UP_CT: codes.CPT_CT_CHEST_WITHOUT_CONTRAST,
    ImagingOrderKind.SHARED_DECISION_VISIT: codes.HCPCS_SDM_VISIT,
}

_INTENTS = frozenset({"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order",
                      "instance-order", "option"})
_STATUSES = frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})


def screening_reason_codes(status: SmokingStatus | None) -> tuple[Code, ...]:
    """The CMS LDCT diagnosis code for a smoking status (none when the status is unknown or never)."""
    if status is SmokingStatus.CURRENT:
        return (codes.ICD_NICOTINE_DEPENDENCE_CIGARETTES,)
    if status is SmokingStatus.FORMER:
        return (codes.ICD_HISTORY_NICOTINE_DEPENDENCE,)
    return ()


def service_request_json(
    patient_id: str,
    kind: ImagingOrderKind,
    *,
    occurrence: date | None = None,
    occurrence_window: tuple[date, date] | None = None,
    reason_codes: Sequence[Code] = (),
    reason_text: str | None = None,
    reason_references: Sequence[str] = (),
    supporting_info: Sequence[str] = (),
    note: str | None = None,
    resource_id: str | None = None,
    intent: str = "proposal",
    status: str = "draft",
    requester: str | None = None,
    encounter: str | None = None,
    authored_on: datetime | None = None,
) -> dict[str, Any]:
    """A FHIR R4 ServiceRequest as plain JSON (no empty or null elements).

    ``reason_references``/``supporting_info``/``requester``/``encounter`` are relative references
    (``Observation/123``). ``occurrence_window`` (start, end) becomes ``occurrencePeriod``; otherwise
    ``occurrence`` becomes ``occurrenceDateTime``.
    """
    if not patient_id or not isinstance(patient_id, str):
        raise InvalidInput("patient_id", "must be a non-empty string")
    if intent not in _INTENTS:
        raise InvalidInput("intent", f"must be a FHIR request-intent code, got {intent!r}")
    if status not in _STATUSES:
        raise InvalidInput("status", f"must be a FHIR request-status code, got {status!r}")
    code = ORDER_CODE[kind]
    out: dict[str, Any] = {"resourceType": "ServiceRequest"}
    if resource_id:
        out["id"] = resource_id
    out["status"] = status
    out["intent"] = intent
    if kind is not ImagingOrderKind.SHARED_DECISION_VISIT:
        out["category"] = [codes.IMAGING_SERVICE_CATEGORY.concept()]
    out["code"] = code.concept(code.display)
    out["subject"] = {"reference": _ref("Patient", patient_id)}
    if encounter:
        out["encounter"] = {"reference": encounter}
    if occurrence_window is not None:
        start, end = occurrence_window
        if end < start:
            raise InvalidInput("occurrence_window", "end must not precede start")
        out["occurrencePeriod"] = {"start": start.isoformat(), "end": end.isoformat()}
    elif occurrence is not None:
        out["occurrenceDateTime"] = occurrence.isoformat()
    if authored_on is not None:
        out["authoredOn"] = authored_on.isoformat()
    if requester:
        out["requester"] = {"reference": requester}
    if reason_codes or reason_text:
        concept: dict[str, Any] = {}
        if reason_codes:
            concept["coding"] = [c.coding() for c in reason_codes]
        if reason_text:
            concept["text"] = reason_text
        out["reasonCode"] = [concept]
    if reason_references:
        out["reasonReference"] = [{"reference": r} for r in dict.fromkeys(reason_references)]
    if supporting_info:
        out["supportingInfo"] = [{"reference": r} for r in dict.fromkeys(supporting_info)]
    if note:
        out["note"] = [{"text": note}]
    return out


def build_service_request(patient_id: str, kind: ImagingOrderKind, **kwargs: Any) -> Any:
    """The same request as :func:`service_request_json`, validated as an R4(B) ``ServiceRequest`` model."""
    from fhir.resources.R4B.servicerequest import ServiceRequest

    return ServiceRequest.model_validate(service_request_json(patient_id, kind, **kwargs))


def screening_order_note(*, pack_years: float | None, status: SmokingStatus | None,
                         years_since_quit: float | None) -> str:
    """The CMS written-order elements we know, in one sentence, plus what the clinician must confirm."""
    parts = []
    if status is SmokingStatus.CURRENT:
        parts.append("current smoker")
    elif status is SmokingStatus.FORMER:
        parts.append("former smoker" + (f", quit {years_since_quit:.0f} years ago" if years_since_quit is not None
                                        else ", quit date unknown"))
    if pack_years is not None:
        parts.append(f"{pack_years:.0f} pack-years")
    known = "; ".join(parts) if parts else "smoking history not recorded"
    return (f"Lung cancer screening LDCT: {known}. The ordering clinician confirms the patient is asymptomatic "
            "and, before a first screen, that shared decision-making took place (CMS NCD 210.14).")


def _ref(resource_type: str, rid: str) -> str:
    return rid if rid.startswith(f"{resource_type}/") else f"{resource_type}/{rid}"
