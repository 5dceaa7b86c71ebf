"""Draft LDCT / follow-up CT / shared-decision orders as FHIR R4 ServiceRequest (validated with fhir.resources)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from risk import codes
from risk.domain import SmokingStatus
from risk.errors import InvalidInput
from risk.outputs.servicerequest import (
    ImagingOrderKind,
    build_service_request,
    screening_order_note,
    screening_reason_codes,
    service_request_json,
)
from tests.cds.conftest import assert_no_empty


@pytest.mark.parametrize(("kind", "code"), [
    (ImagingOrderKind.SCREENING_LDCT, codes.CPT_LDCT_SCREENING),
    (ImagingOrderKind.FOLLOW_UP_CT, codes.CPT_CT_CHEST_WITHOUT_CONTRAST),
    (ImagingOrderKind.SHARED_DECISION_VISIT, codes.HCPCS_SDM_VISIT),
])
def test_each_kind_is_a_valid_draft_proposal(kind: ImagingOrderKind, code: codes.Code) -> None:
    resource = service_request_json("p1", kind, occurrence=date(2025, 7, 1),
                                    reason_codes=screening_reason_codes(SmokingStatus.FORMER),
                                    supporting_info=["Observation/smk", "Observation/smk"],
                                    reason_references=["RiskAssessment/ra-1"], note="n",
                                    authored_on=datetime(2025, 6, 2, 10, tzinfo=UTC))
    assert_no_empty(resource)
    model: Any = ServiceRequest.model_validate(resource)
    assert model.status == "draft" and model.intent == "proposal"
    assert model.code.coding[0].system == code.system and model.code.coding[0].code == code.code
    assert model.subject.reference == "Patient/p1"
    assert resource["supportingInfo"] == [{"reference": "Observation/smk"}]  # de-duplicated
    assert resource["occurrenceDateTime"] == "2025-07-01"
    assert ("category" in resource) == (kind is not ImagingOrderKind.SHARED_DECISION_VISIT)


def test_window_becomes_an_occurrence_period() -> None:
    resource = service_request_json("Patient/p1", ImagingOrderKind.FOLLOW_UP_CT,
                                    occurrence_window=(date(2025, 7, 1), date(2025, 9, 1)))
    assert resource["occurrencePeriod"] == {"start": "2025-07-01", "end": "2025-09-01"}
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert build_service_request("p1", ImagingOrderKind.FOLLOW_UP_CT).intent == "proposal"


@pytest.mark.parametrize(("status", "expected"), [
    (SmokingStatus.CURRENT, [codes.ICD_NICOTINE_DEPENDENCE_CIGARETTES]),
    (SmokingStatus.FORMER, [codes.ICD_HISTORY_NICOTINE_DEPENDENCE]),
    (SmokingStatus.NEVER, []), (None, []),
])
def test_cms_ldct_diagnosis_codes(status: SmokingStatus | None, expected: list[codes.Code]) -> None:
    assert list(screening_reason_codes(status)) == expected


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"intent": "wish"}, "intent"), ({"status": "pending"}, "status"),
    ({"occurrence_window": (date(2025, 9, 1), date(2025, 7, 1))}, "occurrence_window"),
])
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        service_request_json("p1", ImagingOrderKind.SCREENING_LDCT, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_order_note_states_the_cms_elements() -> None:
    note = screening_order_note(pack_years=32.4, status=SmokingStatus.FORMER, years_since_quit=6.2)
    assert "former smoker, quit 6 years ago" in note and "32 pack-years" in note and "asymptomatic" in note
    assert "not recorded" in screening_order_note(pack_years=None, status=None, years_since_quit=None)
