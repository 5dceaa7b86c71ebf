"""patient-view, order-select and order-sign end to end through HTTP: cards per the CDS Hooks 2.0 response rules
(validated against the JSON Schemas and, for embedded resources, against FHIR R4B), persisted for feedback,
audited, and {"cards": []} for orders we have nothing to say about."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest
from sqlalchemy import select

from risk import codes
from risk.cds.service import CdsService
from risk.deadline import Deadline
from risk.domain import (
    ImagingStudyRef,
    IngestionNote,
    NoduleComposition,
    NoduleTrack,
    SourceState,
    SourceStatus,
)
from risk.store.audit import AuditEvent
from risk.store.cds import CdsCard
from tests.assess.builders import observation, study, track
from tests.cds.conftest import TODAY
from tests.cds.fhir_data import imaging_study, prefetch, smoker_resources
from tests.support.cds_client import CdsClient, hook_request

Schema = Callable[[str, Any], None]


OK_PACS = SourceStatus("pacs", SourceState.OK)


@dataclass(frozen=True)
class Imaging:
    """What the imaging pipeline returns (risk.snapshots.ImagingOutcome), built by hand."""

    studies: tuple[ImagingStudyRef, ...] = ()
    tracks: tuple[NoduleTrack, ...] = ()
    notes: tuple[IngestionNote, ...] = ()
    status: SourceStatus = OK_PACS


def imaging_loader(result: Imaging) -> Callable[..., Imaging]:
    def load(*, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date,
             deadline: Deadline) -> Imaging:
        return result

    return load


def call(cds: CdsClient, schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    response = cds.call("lung-risk", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    out: dict[str, Any] = response.json()
    schema("response", out)
    for card in out["cards"]:
        check_card(card)
    return out


def check_card(card: dict[str, Any]) -> None:
    assert len(card["summary"]) < 140
    assert card["uuid"]
    assert card["source"]["topic"]["system"] == codes.CDS_CARD_TYPE_SYSTEM
    smart = [link for link in card["links"] if link["type"] == "smart"]
    assert smart and smart[0]["url"].endswith("/app/launch")
    context = orjson.loads(smart[0]["appContext"])
    assert context["assessmentId"] and context["patient"] and context["view"]
    for reason in card.get("overrideReasons", ()):
        assert reason["display"]
    for suggestion in card.get("suggestions", ()):
        for action in suggestion["actions"]:
            if "resource" in action and action["resource"]["resourceType"] == "ServiceRequest":
                ServiceRequest.model_validate(action["resource"])


def services_request(resources: dict[str, Any], *, hook: str = "patient-view", **context: Any) -> dict[str, Any]:
    return hook_request(hook, "p1", prefetch=prefetch(resources), context=context or None)


def ct_order(oid: str, code: codes.Code, when: date | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "ServiceRequest", "id": oid, "status": "draft", "intent": "order",
                           "code": {"coding": [code.coding()]}, "subject": {"reference": "Patient/p1"}}
    if when is not None:
        out["occurrenceDateTime"] = when.isoformat()
    return out


def draft_orders(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


# --- patient-view ---------------------------------------------------------------------------------------------
def test_eligible_never_screened_gets_a_screening_card(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    out = call(cds, schema, services_request(smoker_resources("p1", TODAY)))
    assert len(out["cards"]) == 1
    card = out["cards"][0]
    assert card["source"]["topic"]["code"] == codes.CARD_SCREENING_DUE.code
    assert card["indicator"] == "info"
    assert "no LDCT on record" in card["summary"]
    assert card["selectionBehavior"] == "any"
    resources = [a["resource"] for s in card["suggestions"] for a in s["actions"]]
    assert sorted(r["code"]["coding"][0]["code"] for r in resources) == ["71271", "G0296"]
    ldct = next(r for r in resources if r["code"]["coding"][0]["code"] == "71271")
    assert ldct["status"] == "draft" and ldct["intent"] == "proposal"
    assert ldct["reasonCode"][0]["coding"][0]["code"] == codes.ICD_NICOTINE_DEPENDENCE_CIGARETTES.code
    assert {"reference": "Observation/p1-smk"} in ldct["supportingInfo"]
    # key numbers, data dates and model versions in the Markdown detail
    assert "40 pack-years" in card["detail"] and "plcom2012" in card["detail"]
    assert (TODAY - timedelta(days=40)).isoformat() in card["detail"]
    assert "systemActions" not in out


def test_cards_and_suggestions_are_persisted_and_audited(cds: CdsClient, schema: Schema,
                                                        service: CdsService) -> None:
    body = services_request(smoker_resources("p1", TODAY))
    out = call(cds, schema, body)
    assert service.ledger.flush()
    assert service.db is not None
    with service.db.session() as s:
        rows = list(s.scalars(select(CdsCard)))
        audits = [a for a in s.scalars(select(AuditEvent)) if a.action == "cds.patient-view"]
    assert [r.uuid for r in rows] == [c["uuid"] for c in out["cards"]]
    assert rows[0].hook_instance == body["hookInstance"]
    assert {x["uuid"] for x in rows[0].suggestions or []} == {s["uuid"] for s in out["cards"][0]["suggestions"]}
    assert len(audits) == 1 and audits[0].detail is not None
    assert audits[0].detail["hookInstance"] == body["hookInstance"]
    assert audits[0].entity == "Patient/p1"
    assert "access_token" not in orjson.dumps(audits[0].detail).decode()


def test_screening_due_versus_overdue(cds: CdsClient, schema: Schema) -> None:
    def card_for(months_ago: int) -> dict[str, Any]:
        res = smoker_resources("p1", TODAY)
        last = TODAY - timedelta(days=round(months_ago * 30.44))
        res["imagingStudies"] = [imaging_study("s1", "p1", "1.2.840.1", last)]
        out = call(cds, schema, services_request(res))
        return out["cards"][0] if out["cards"] else {}

    assert card_for(6) == {}  # not yet due: nothing to say on patient-view
    due = card_for(12)
    assert due["indicator"] == "info" and "due" in due["summary"]
    overdue = card_for(17)
    assert overdue["indicator"] == "warning" and "overdue" in overdue["summary"]


def test_never_smoker_gets_no_cards(cds: CdsClient, schema: Schema) -> None:
    res = smoker_resources("p1", TODAY, status=codes.NEVER_SMOKER, pack_years=None, cigarettes_per_day=None,
                           smoking_years=None)
    assert call(cds, schema, services_request(res)) == {"cards": []}


def test_overdue_suspicious_nodule_is_critical(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    seen = TODAY - timedelta(days=200)  # Lung-RADS 4A at baseline: 3-month LDCT, long overdue
    uid = "1.2.840.99.1"
    nodule = track("n1", observation(uid, seen, long_mm=10.0, short_mm=9.0, tracking_uid="2.25.42"))
    service.imaging = imaging_loader(Imaging(studies=(study(uid, seen),), tracks=(nodule,)))
    res = smoker_resources("p1", TODAY)
    res["imagingStudies"] = [imaging_study("s1", "p1", uid, seen)]
    out = call(cds, schema, services_request(res))
    card = next(c for c in out["cards"] if c["source"]["topic"]["code"] == codes.CARD_NODULE_FOLLOW_UP.code)
    assert card["indicator"] == "critical"
    assert "Lung-RADS v2022 4A" in card["summary"] and "overdue" in card["summary"]
    context = orjson.loads(next(link for link in card["links"] if link["type"] == "smart")["appContext"])
    assert context["trackingUid"] == "2.25.42" and context["trackId"] == "n1"
    follow_up = card["suggestions"][0]["actions"][0]["resource"]
    assert follow_up["code"]["coding"][0]["code"] == codes.CPT_CT_CHEST_WITHOUT_CONTRAST.code
    assert {"reference": "ImagingStudy/s1"} in follow_up["supportingInfo"]


def test_due_probably_benign_nodule_is_a_warning(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    seen = TODAY - timedelta(days=183)  # Lung-RADS 3 at baseline: 6-month LDCT due now
    uid = "1.2.840.99.2"
    nodule = track("n7", observation(uid, seen, long_mm=7.0, short_mm=6.4))
    service.imaging = imaging_loader(Imaging(studies=(study(uid, seen),), tracks=(nodule,)))
    res = smoker_resources("p1", TODAY)
    res["imagingStudies"] = [imaging_study("s1", "p1", uid, seen)]
    out = call(cds, schema, services_request(res))
    card = next(c for c in out["cards"] if c["source"]["topic"]["code"] == codes.CARD_NODULE_FOLLOW_UP.code)
    assert card["indicator"] == "warning"
    assert "Lung-RADS v2022 3" in card["summary"]
    # the nodule plan replaces annual screening: no separate screening card
    assert all(c["source"]["topic"]["code"] != codes.CARD_SCREENING_DUE.code for c in out["cards"])


def test_growing_nodule_raises_a_rising_risk(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    first, second = TODAY - timedelta(days=400), TODAY - timedelta(days=30)
    nodule = track("g1", observation("1.2.3.1", first, 6.0, composition=NoduleComposition.SOLID),
                   observation("1.2.3.2", second, 9.0, composition=NoduleComposition.SOLID))
    service.imaging = imaging_loader(Imaging(studies=(study("1.2.3.1", first), study("1.2.3.2", second)),
                                             tracks=(nodule,)))
    out = call(cds, schema, services_request(smoker_resources("p1", TODAY)))
    text = orjson.dumps(out).decode()
    assert "grew" in text and "NELSON" in text


def test_system_actions_carry_a_valid_risk_assessment(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    service.cards = type(service.cards)(base_url=service.base_url, synthetic_data=True, system_actions=True)
    out = call(cds, schema, services_request(smoker_resources("p1", TODAY)))
    (action,) = out["systemActions"]
    assert action["type"] == "create"
    ra: Any = RiskAssessment.model_validate(action["resource"])
    prediction = ra.prediction[0]
    assert 0 < float(prediction.probabilityDecimal) < 1  # a fraction, never a percentage
    assert "%" in prediction.rationale


def test_outage_is_reported_as_could_not_check(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    service.imaging = imaging_loader(Imaging(status=SourceStatus("pacs", SourceState.UNAVAILABLE, "timed out")))
    res = smoker_resources("p1", TODAY, status=codes.NEVER_SMOKER, pack_years=None, cigarettes_per_day=None,
                           smoking_years=None)
    out = call(cds, schema, services_request(res))
    (card,) = out["cards"]
    assert card["source"]["topic"]["code"] == codes.CARD_DATA_GAPS.code
    assert card["indicator"] == "info" and "could not be checked" in card["summary"]
    assert "timed out" in card["detail"]


# --- malformed requests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.pop("hookInstance"), "hookInstance"),
    (lambda b: b.pop("hook"), "hook"),
    (lambda b: b.update(hook="medication-prescribe"), "hook"),
    (lambda b: b["context"].pop("patientId"), "context.patientId"),
    (lambda b: b["context"].pop("userId"), "context.userId"),
    (lambda b: b.pop("context"), "context"),
    (lambda b: b.update(fhirAuthorization={"access_token": "x", "token_type": "Bearer", "expires_in": 1,
                                           "scope": "s", "subject": "c"}), "fhirServer"),
    (lambda b: b.update(fhirServer="ftp://x"), "fhirServer"),
    (lambda b: b.update(prefetch=[]), "prefetch"),
])
def test_malformed_requests_are_422_naming_the_field(cds: CdsClient, mutate: Callable[[dict[str, Any]], Any],
                                                    field: str) -> None:
    body = services_request(smoker_resources("p1", TODAY))
    mutate(body)
    response = cds.call("lung-risk", body)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == [field] and field in issue["diagnostics"]


def test_order_hooks_need_their_context(cds: CdsClient) -> None:
    body = services_request(smoker_resources("p1", TODAY), hook="order-select", draftOrders=draft_orders())
    response = cds.call("lung-risk", body)
    assert response.status_code == 422 and response.json()["issue"][0]["expression"] == ["context.selections"]


def test_not_json_and_unknown_service(cds: CdsClient) -> None:
    token_url = "http://testserver/cds-services/lung-risk"
    response = cds.http.post(token_url, content=b"{not json", headers={
        "Authorization": f"Bearer {cds.signer.token(token_url)}"})  # type: ignore[union-attr]
    assert response.status_code == 422 and response.json()["issue"][0]["expression"] == ["body"]
    assert cds.call("other-service", {"hook": "patient-view"}).status_code == 404


# --- order-select / order-sign ---------------------------------------------------------------------------------
def test_unrelated_orders_get_no_cards_and_need_no_data(cds: CdsClient, schema: Schema) -> None:
    lab = {"resourceType": "ServiceRequest", "id": "lab1", "status": "draft", "intent": "order",
           "code": {"coding": [codes.HEMOGLOBIN.coding()]}, "subject": {"reference": "Patient/p1"}}
    med = {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order",
           "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "aspirin"}}
    for hook, context in (("order-select", {"selections": ["ServiceRequest/lab1"]}), ("order-sign", {})):
        body = hook_request(hook, "p1", context={"draftOrders": draft_orders(lab, med), **context})
        assert call(cds, schema, body) == {"cards": []}  # no prefetch, no fhirServer, still no 412


def test_first_screen_order_needs_shared_decision_making(cds: CdsClient, schema: Schema) -> None:
    order = ct_order("ldct1", codes.CPT_LDCT_SCREENING)
    body = services_request(smoker_resources("p1", TODAY), hook="order-select",
                            draftOrders=draft_orders(order), selections=["ServiceRequest/ldct1"])
    out = call(cds, schema, body)
    kinds = {c["source"]["topic"]["code"]: c for c in out["cards"]}
    sdm = kinds[codes.CARD_ORDER_SHARED_DECISION.code]
    assert sdm["indicator"] == "warning"
    created = sdm["suggestions"][0]["actions"][0]["resource"]
    assert created["code"]["coding"][0]["code"] == codes.HCPCS_SDM_VISIT.code


def test_screening_order_for_an_ineligible_patient(cds: CdsClient, schema: Schema) -> None:
    order = ct_order("ldct1", codes.CPT_LDCT_SCREENING)
    res = smoker_resources("p1", TODAY, age=45)
    out = call(cds, schema, services_request(res, hook="order-sign", draftOrders=draft_orders(order)))
    card = next(c for c in out["cards"] if c["source"]["topic"]["code"] == codes.CARD_ORDER_ELIGIBILITY.code)
    assert card["indicator"] == "warning" and "criteria" in card["summary"]
    assert "age 45 outside 50-80" in card["detail"]
    delete = card["suggestions"][0]["actions"][0]
    assert delete == {"type": "delete", "description": delete["description"], "resourceId": "ServiceRequest/ldct1"}


def test_follow_up_too_early_due_and_overdue(cds: CdsClient, schema: Schema, service: CdsService) -> None:
    seen = TODAY - timedelta(days=60)  # Lung-RADS 3 at baseline → 6-month LDCT
    uid = "1.2.840.77"
    service.imaging = imaging_loader(Imaging(studies=(study(uid, seen),),
                                             tracks=(track("n1", observation(uid, seen, long_mm=7.0, short_mm=6.5)),)))
    res = smoker_resources("p1", TODAY)
    res["imagingStudies"] = [imaging_study("s1", "p1", uid, seen)]

    def timing(when: date) -> dict[str, Any]:
        order = ct_order("ct1", codes.CPT_CT_CHEST_WITHOUT_CONTRAST, when)
        out = call(cds, schema, services_request(res, hook="order-sign", draftOrders=draft_orders(order)))
        return next(c for c in out["cards"] if c["source"]["topic"]["code"] == codes.CARD_ORDER_TIMING.code)

    early = timing(TODAY)
    assert early["indicator"] == "warning" and early["summary"].startswith("Chest CT order: Too early")
    update = early["suggestions"][0]["actions"][0]
    assert update["type"] == "update"
    ServiceRequest.model_validate(update["resource"])
    assert update["resource"]["occurrenceDateTime"] > TODAY.isoformat()
    due = timing(seen + timedelta(days=183))
    assert due["indicator"] == "info" and "Timely" in due["summary"]
    late = timing(seen + timedelta(days=300))
    assert late["indicator"] == "info" and "Overdue" in late["summary"]


def test_duplicate_imaging(cds: CdsClient, schema: Schema) -> None:
    res = smoker_resources("p1", TODAY)
    res["imagingStudies"] = [imaging_study("s1", "p1", "1.2.5", TODAY - timedelta(days=10), "CT chest with contrast")]
    order = ct_order("ct9", codes.CPT_CT_CHEST_WITH_CONTRAST)
    out = call(cds, schema, services_request(res, hook="order-sign", draftOrders=draft_orders(order)))
    card = next(c for c in out["cards"] if c["source"]["topic"]["code"] == codes.CARD_ORDER_DUPLICATE.code)
    assert card["indicator"] == "warning"
    assert (TODAY - timedelta(days=10)).isoformat() in card["summary"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "ServiceRequest/ct9"


def test_order_select_judges_only_the_selection(cds: CdsClient, schema: Schema) -> None:
    res = smoker_resources("p1", TODAY, age=45)
    orders = draft_orders(ct_order("a", codes.CPT_LDCT_SCREENING), ct_order("b", codes.CPT_LDCT_SCREENING))
    out = call(cds, schema, services_request(res, hook="order-select", draftOrders=orders,
                                             selections=["ServiceRequest/b"]))
    assert out["cards"]
    assert all("ServiceRequest/b" in c["detail"] for c in out["cards"])
    assert any(c["source"]["topic"]["code"] == codes.CARD_ORDER_DUPLICATE.code for c in out["cards"])
