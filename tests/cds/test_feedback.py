"""The feedback endpoint (CDS Hooks 2.0 §Feedback): validated, idempotent, persisted (PostgreSQL and SQLite),
accept and override rates per card type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from risk import codes
from risk.app import create_app
from risk.cds.service import CdsService
from risk.config import load_settings
from risk.store.cds import CdsFeedback, feedback_rates, override_reason_counts
from tests.cds.conftest import BASE, TODAY
from tests.cds.fhir_data import prefetch, smoker_resources
from tests.support.cds_client import ISSUER, CdsClient, JwksServer, JwtSigner, hook_request

Schema = Callable[[str, Any], None]
NOW = "2025-06-02T10:05:31Z"


def _app(url: str, jwks_url: str) -> TestClient:
    settings = load_settings(store={"url": url}, public_base_url=BASE,
                             cds={"issuers": [{"iss": ISSUER, "jwks_url": jwks_url}]})
    app = create_app(settings)
    app.state.cds.today = lambda: TODAY
    return TestClient(app, base_url=BASE)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_client(request: pytest.FixtureRequest, tmp_path: Path, jwks_server: JwksServer,
                 signer: JwtSigner) -> Iterator[CdsClient]:
    url = f"sqlite:///{tmp_path}/fb.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with _app(url, jwks_server.url) as client:
        yield CdsClient(client, BASE, signer)


def _service(cds: CdsClient) -> CdsService:
    return cds.http.app.state.cds  # type: ignore[attr-defined]


def _card(cds: CdsClient) -> dict[str, Any]:
    body = hook_request("patient-view", "p1", prefetch=prefetch(smoker_resources("p1", TODAY)))
    response = cds.call("lung-risk", body)
    assert response.status_code == 200
    card: dict[str, Any] = response.json()["cards"][0]
    return card


def _count(cds: CdsClient, card_uuid: str) -> int:
    db = _service(cds).db
    assert db is not None
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(CdsFeedback).where(CdsFeedback.card_uuid == card_uuid))
                   or 0)


def test_accepted_feedback_is_stored_once(store_client: CdsClient, schema: Schema) -> None:
    card = _card(store_client)
    items = [{"card": card["uuid"], "outcome": "accepted",
              "acceptedSuggestions": [{"id": card["suggestions"][1]["uuid"]}], "outcomeTimestamp": NOW}]
    schema("feedback", {"feedback": items})
    first = store_client.feedback("lung-risk", items)
    assert first.status_code == 200 and first.content == b""
    again = store_client.feedback("lung-risk", items)  # clients may repeat feedback: idempotent
    assert again.status_code == 200
    assert _count(store_client, card["uuid"]) == 1


def test_override_with_reason_and_rates(store_client: CdsClient, schema: Schema) -> None:
    since = datetime.now(UTC)
    accepted, overridden, ignored = _card(store_client), _card(store_client), _card(store_client)
    reason = codes.OVERRIDE_ALREADY_SCHEDULED
    items = [
        {"card": accepted["uuid"], "outcome": "accepted",
         "acceptedSuggestions": [{"id": accepted["suggestions"][0]["uuid"]}], "outcomeTimestamp": NOW},
        {"card": overridden["uuid"], "outcome": "overridden",
         "overrideReason": {"reason": {"system": reason.system, "code": reason.code},
                            "userComment": "CT booked elsewhere"}, "outcomeTimestamp": NOW},
    ]
    schema("feedback", {"feedback": items})
    assert store_client.feedback("lung-risk", items).status_code == 200
    assert ignored["uuid"]
    db = _service(store_client).db
    assert db is not None
    with db.session() as s:
        rates = {r.card_type: r for r in feedback_rates(s, since=since)}
        reasons = override_reason_counts(s, codes.CARD_SCREENING_DUE.code)
    screening = rates[codes.CARD_SCREENING_DUE.code]
    assert (screening.issued, screening.with_feedback, screening.accepted, screening.overridden) == (3, 2, 1, 1)
    assert screening.accept_rate == 0.5 and screening.override_rate == 0.5
    assert screening.response_rate == pytest.approx(2 / 3)
    assert (reason.system, reason.code, 1) in reasons
    assert screening.to_json()["accept_rate"] == 0.5


def test_latest_outcome_counts_per_card(store_client: CdsClient) -> None:
    since = datetime.now(UTC)
    card = _card(store_client)
    store_client.feedback("lung-risk", [{"card": card["uuid"], "outcome": "overridden",
                                         "outcomeTimestamp": "2025-06-02T10:00:00Z"}])
    store_client.feedback("lung-risk", [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp":
                                         "2025-06-02T11:00:00Z",
                                         "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}])
    db = _service(store_client).db
    assert db is not None
    with db.session() as s:
        rate = {r.card_type: r for r in feedback_rates(s, since=since)}[codes.CARD_SCREENING_DUE.code]
    assert (rate.with_feedback, rate.accepted, rate.overridden) == (1, 1, 0)


BAD_ITEMS: list[tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    (lambda c: {"card": "00000000-0000-4000-8000-000000000000", "outcome": "overridden", "outcomeTimestamp": NOW},
     "feedback[1].card"),
    (lambda c: {"card": c["uuid"], "outcome": "accepted", "outcomeTimestamp": NOW}, "feedback[1].acceptedSuggestions"),
    (lambda c: {"card": c["uuid"], "outcome": "ignored", "outcomeTimestamp": NOW}, "feedback[1].outcome"),
    (lambda c: {"card": c["uuid"], "outcome": "overridden", "outcomeTimestamp": "yesterday"},
     "feedback[1].outcomeTimestamp"),
    (lambda c: {"card": c["uuid"], "outcome": "overridden"}, "feedback[1].outcomeTimestamp"),
    (lambda c: {"card": c["uuid"], "outcome": "accepted", "outcomeTimestamp": NOW,
                "acceptedSuggestions": [{"id": "not-a-suggestion-of-this-card"}]},
     "feedback[1].acceptedSuggestions[0].id"),
    (lambda c: {"card": c["uuid"], "outcome": "overridden", "outcomeTimestamp": NOW,
                "overrideReason": {"reason": {"code": "x"}}}, "feedback[1].overrideReason.reason"),
]


@pytest.mark.parametrize(("make", "field"), BAD_ITEMS)
def test_bad_feedback_is_422_naming_the_field_and_stores_nothing(
        cds: CdsClient, make: Callable[[dict[str, Any]], dict[str, Any]], field: str) -> None:
    card = _card(cds)
    good = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": NOW}
    response = cds.feedback("lung-risk", [good, make(card)])
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == [field]
    assert _count(cds, card["uuid"]) == 0  # all or nothing


@pytest.mark.parametrize("body", [b"", b"[]", b'{"feedback": []}', b'{"feedback": {}}', b"{"])
def test_feedback_body_must_be_an_object_with_an_array(cds: CdsClient, body: bytes) -> None:
    url = f"{BASE}/cds-services/lung-risk/feedback"
    assert cds.signer is not None
    response = cds.http.post(url, content=body, headers={"Authorization": f"Bearer {cds.signer.token(url)}"})
    assert response.status_code == 422


def test_feedback_token_audience_is_the_feedback_url(cds: CdsClient, signer: JwtSigner) -> None:
    card = _card(cds)
    item = [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": NOW}]
    assert cds.feedback("lung-risk", item, token=signer.token(f"{BASE}/cds-services/lung-risk")).status_code == 401
    assert cds.feedback("lung-risk", item).status_code == 200
