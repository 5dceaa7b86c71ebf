"""Prefetch (CDS Hooks 2.0 §Prefetch): use what was prefetched; ``null`` means no data; a missing key or an
OperationOutcome means fetch it from ``fhirServer`` with ``fhirAuthorization``, following paging; 412 when
required data cannot be had; an outage within the time budget becomes "could not be checked"."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from risk import codes
from risk.cds.data import FhirClientPool
from risk.cds.discovery import CDS_PREFETCH_TEMPLATES
from risk.cds.service import CdsService
from risk.config import FhirSettings
from tests.cds.conftest import TODAY
from tests.cds.fhir_data import imaging_study, observation, prefetch, smoker_resources
from tests.support.cds_client import CdsClient, hook_request, resolve_prefetch

Schema = Callable[[str, Any], None]
OPERATION_OUTCOME = {"resourceType": "OperationOutcome",
                     "issue": [{"severity": "error", "code": "timeout", "diagnostics": "query timed out"}]}


def _topics(out: dict[str, Any]) -> list[str]:
    return sorted(c["source"]["topic"]["code"] for c in out["cards"])


# --- without a FHIR server: null vs missing vs OperationOutcome ------------------------------------------------
def test_null_means_no_data_and_is_not_fetched(cds: CdsClient, schema: Schema) -> None:
    given = prefetch(smoker_resources("p1", TODAY))
    given["familyHistory"] = None
    given["imagingStudies"] = None
    response = cds.call("lung-risk", hook_request("patient-view", "p1", prefetch=given))
    assert response.status_code == 200  # no fhirServer needed: null answered the key
    schema("response", response.json())
    assert _topics(response.json()) == [codes.CARD_SCREENING_DUE.code]


@pytest.mark.parametrize("key", sorted(CDS_PREFETCH_TEMPLATES))
def test_missing_key_without_fhir_server_is_412(cds: CdsClient, key: str) -> None:
    given = prefetch(smoker_resources("p1", TODAY))
    del given[key]
    response = cds.call("lung-risk", hook_request("patient-view", "p1", prefetch=given))
    assert response.status_code == 412
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and key in outcome["issue"][0]["diagnostics"]


def test_operation_outcome_without_fhir_server_is_412(cds: CdsClient) -> None:
    given = prefetch(smoker_resources("p1", TODAY))
    given["observations"] = OPERATION_OUTCOME
    response = cds.call("lung-risk", hook_request("patient-view", "p1", prefetch=given))
    assert response.status_code == 412


def test_no_prefetch_no_server_is_412_and_audited(cds: CdsClient, service: CdsService) -> None:
    response = cds.call("lung-risk", hook_request("patient-view", "p1"))
    assert response.status_code == 412
    assert service.ledger.flush()
    from sqlalchemy import select

    from risk.store.audit import AuditEvent

    assert service.db is not None
    with service.db.session() as s:
        outcomes = [a.outcome for a in s.scalars(select(AuditEvent)) if a.action == "cds.patient-view"]
    assert outcomes == ["precondition"]


# --- a FHIR server that fails: a real HTTP server on loopback that refuses, or answers too slowly ------------
class FaultServer:
    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        outer = self
        self.status, self.delay_s, self.requests = status, delay_s, 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                time.sleep(outer.delay_s)
                body = b'{"resourceType":"Bundle","type":"searchset"}'
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def only_patient() -> dict[str, Any]:
    given = prefetch(smoker_resources("p1", TODAY))
    return {"patient": given["patient"]}


def test_fhir_server_that_refuses_the_token_is_412(cds: CdsClient, only_patient: dict[str, Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    secret = "fhir-access-token-never-logged-0123456789"
    with caplog.at_level(logging.DEBUG), FaultServer(status=401) as fhir:
        body = hook_request("patient-view", "p1", prefetch=only_patient, fhir_server=fhir.url, access_token=secret)
        response = cds.call("lung-risk", body)
    assert response.status_code == 412
    assert "refused access" in response.json()["issue"][0]["diagnostics"]
    assert secret not in caplog.text and secret not in response.text


def test_fhir_server_down_is_reported_not_hidden(cds: CdsClient, schema: Schema, only_patient: dict[str, Any],
                                                 service: CdsService) -> None:
    with FaultServer() as closed:
        url = closed.url
    body = hook_request("patient-view", "p1", prefetch=only_patient, fhir_server=url, access_token="t")
    response = cds.call("lung-risk", body)
    assert response.status_code == 200
    out = response.json()
    schema("response", out)
    (card,) = out["cards"]
    assert card["source"]["topic"]["code"] == codes.CARD_DATA_GAPS.code
    assert "could not be checked" in card["summary"] and "EHR data" in card["detail"]


def test_slow_fhir_server_stays_within_the_budget(cds: CdsClient, only_patient: dict[str, Any],
                                                  service: CdsService) -> None:
    budget = service.settings.cds.request_budget_s
    with FaultServer(delay_s=budget + 2) as slow:
        body = hook_request("patient-view", "p1", prefetch=only_patient, fhir_server=slow.url, access_token="t")
        started = time.monotonic()
        response = cds.call("lung-risk", body)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < budget + 1.0
    text = response.text
    assert "could not be checked" in text.lower() or "Could not be checked" in text


# --- the real FHIR server of the local stack (root conftest fixtures: stack, fhir_token, fhir_client) ---------
@pytest.fixture(scope="module")
def seeded(fhir_client: httpx.Client) -> dict[str, Any]:
    """A patient on the stack's FHIR server: an eligible current smoker with 12 labs (for paging) and a chest
    CT 13 months ago (annual screening due)."""
    pid = f"cds-{uuid.uuid4().hex[:10]}"
    resources = smoker_resources(pid, TODAY)
    labs = [observation(f"{pid}-hb{i}", pid, codes.HEMOGLOBIN, TODAY - timedelta(days=30 * i),
                        valueQuantity={"value": 13.0 + i / 10, "unit": "g/dL", "system": codes.UCUM, "code": "g/dL"})
            for i in range(12)]
    resources["observations"] = labs + resources["observations"]
    resources["imagingStudies"] = [imaging_study(f"{pid}-ct", pid, f"2.25.{uuid.uuid4().int}",
                                                 TODAY - timedelta(days=396))]
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
               for items in resources.values() for r in items]
    response = fhir_client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                                headers={"Content-Type": "application/fhir+json"})
    assert response.status_code in (200, 201), response.text[:500]
    return {"id": pid, "resources": resources}


@pytest.fixture
def fhir_base(stack: Any) -> str:
    return str(stack.fhir_base_url)


@pytest.fixture
def read_token(fhir_token: Callable[..., str]) -> str:
    return fhir_token("system/*.rs")


@pytest.fixture
def patient_budget(service: CdsService) -> None:
    """The local Medplum server searches its whole in-memory store per query (seconds once cohorts are
    loaded): give these calls a budget the server can meet; the budget itself is tested above."""
    service.budget_s = 60.0
    service.pool = FhirClientPool(FhirSettings(timeout_s=60, retries=1))


def _expected(cds: CdsClient, seeded: dict[str, Any]) -> dict[str, Any]:
    body = hook_request("patient-view", seeded["id"], prefetch=prefetch(seeded["resources"]))
    response = cds.call("lung-risk", body)
    assert response.status_code == 200
    return dict(response.json())


def _summaries(out: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in out["cards"])


@pytest.mark.integration
@pytest.mark.usefixtures("patient_budget")
def test_no_prefetch_fetches_everything_from_fhir_server(cds: CdsClient, schema: Schema, seeded: dict[str, Any],
                                                         fhir_base: str, read_token: str) -> None:
    expected = _expected(cds, seeded)
    assert _topics(expected) == [codes.CARD_SCREENING_DUE.code]
    body = hook_request("patient-view", seeded["id"], fhir_server=fhir_base, access_token=read_token)
    response = cds.call("lung-risk", body)
    assert response.status_code == 200, response.text
    schema("response", response.json())
    assert _summaries(response.json()) == _summaries(expected)


@pytest.mark.integration
@pytest.mark.usefixtures("patient_budget")
def test_partial_and_operation_outcome_prefetch_are_completed_from_fhir_server(
        cds: CdsClient, schema: Schema, seeded: dict[str, Any], fhir_base: str, read_token: str) -> None:
    expected = _expected(cds, seeded)
    given = prefetch(seeded["resources"])
    del given["conditions"]
    del given["imagingStudies"]
    given["observations"] = OPERATION_OUTCOME
    body = hook_request("patient-view", seeded["id"], prefetch=given, fhir_server=fhir_base,
                        access_token=read_token)
    response = cds.call("lung-risk", body)
    assert response.status_code == 200, response.text
    schema("response", response.json())
    assert _summaries(response.json()) == _summaries(expected)


@pytest.mark.integration
@pytest.mark.usefixtures("patient_budget")
def test_null_is_not_refetched_even_with_a_fhir_server(cds: CdsClient, seeded: dict[str, Any], fhir_base: str,
                                                       read_token: str) -> None:
    given = prefetch(seeded["resources"])
    given["imagingStudies"] = None  # "no data": the CT on the server must not be found
    body = hook_request("patient-view", seeded["id"], prefetch=given, fhir_server=fhir_base,
                        access_token=read_token)
    out = cds.call("lung-risk", body).json()
    assert "no LDCT on record" in out["cards"][0]["summary"]


@pytest.mark.integration
@pytest.mark.usefixtures("patient_budget")
def test_prefetch_resolved_by_the_harness_with_paging(cds: CdsClient, schema: Schema, seeded: dict[str, Any],
                                                      fhir_base: str, read_token: str) -> None:
    token = read_token
    tokens = {"context.patientId": seeded["id"]}
    with httpx.Client(timeout=10) as http:
        # the EHR sends only the first page of each search (8 entries) with its next link
        paged = resolve_prefetch(CDS_PREFETCH_TEMPLATES, tokens, fhir_base, http, access_token=token,
                                 follow_pages=False, page_size=8)
        full = resolve_prefetch(CDS_PREFETCH_TEMPLATES, tokens, fhir_base, http, access_token=token)
    assert any(link["relation"] == "next" for link in paged["observations"].get("link", []))
    assert len(full["observations"]["entry"]) == len(seeded["resources"]["observations"])
    expected = _expected(cds, seeded)
    body = hook_request("patient-view", seeded["id"], prefetch=paged, fhir_server=fhir_base, access_token=token)
    response = cds.call("lung-risk", body)
    assert response.status_code == 200
    schema("response", response.json())
    # the smoking observations sit beyond the first page: the card exists only if the service followed `next`
    assert _summaries(response.json()) == _summaries(expected)
    body = hook_request("patient-view", seeded["id"], prefetch=full)
    assert _summaries(cds.call("lung-risk", body).json()) == _summaries(expected)


@pytest.mark.integration
@pytest.mark.usefixtures("patient_budget")
def test_fhir_server_without_token_is_412(cds: CdsClient, seeded: dict[str, Any], fhir_base: str) -> None:
    body = hook_request("patient-view", seeded["id"], fhir_server=fhir_base)
    response = cds.call("lung-risk", body)
    assert response.status_code == 412
