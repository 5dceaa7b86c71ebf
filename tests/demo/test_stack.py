"""The simulated EHR against the local stack of real servers: patients from the FHIR server (SMART Backend Services
token), patient-view with prefetch and with ``fhirAuthorization``, and the EHR launch of the SMART app through the
real authorization server. The service runs in-process; its CDS calls to itself go through an ASGI transport."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from risk.config import Settings
from risk.deadline import Deadline
from risk.demo.cds_client import REDACTED
from risk.demo.patients import FhirPatientDirectory, PatientQuery, patient_row
from risk.loading.backend_auth import BackendServicesAuth
from tests.conftest import Stack
from tests.demo.conftest import cohort_patients, demo_client
from tests.demo.test_web import raw_json

pytestmark = pytest.mark.integration


def test_patient_directory_reads_the_fhir_server(stack: Stack, stack_cohort: Path, stack_settings: Settings) -> None:
    auth = BackendServicesAuth.from_settings(stack_settings.smart_backend)
    directory = FhirPatientDirectory(stack.fhir_base_url, token=auth.token, timeout_s=30)
    try:
        expected = {pid: patient_row(p, date.today()) for pid, p in cohort_patients(stack_cohort).items()}
        page = directory.page(PatientQuery(name="LCB-0000001"), deadline=Deadline(60))
        assert expected["lcb-0000001"] in page.rows
        first = directory.page(PatientQuery(name="LCB-000000", count=1), deadline=Deadline(60))
        assert len(first.rows) == 1 and first.total is not None and first.total >= 3 and first.next_cursor
        second = directory.page(PatientQuery(cursor=first.next_cursor), deadline=Deadline(60))
        assert len(second.rows) == 1 and second.rows[0].patient_id != first.rows[0].patient_id
        assert second.first_index == 2 and second.previous_cursor
        back = directory.page(PatientQuery(cursor=second.previous_cursor), deadline=Deadline(60))
        assert back.rows == first.rows
        assert directory.read("lcb-0000002", deadline=Deadline(60)) == expected["lcb-0000002"]
        assert directory.read("no-such-patient-demo", deadline=Deadline(60)) is None
    finally:
        directory.close()
        auth.close()


def test_patient_list_page_offers_both_actions(stack_cohort: Path, stack_settings: Settings) -> None:
    with demo_client(stack_settings) as client:
        r = client.get("/demo/ehr", params={"q": "LCB-0000001"})
        assert r.status_code == 200
        row = re.search(r'<tr data-patient="lcb-0000001">(.*?)</tr>', r.text, re.S)
        assert row, r.text[-2000:]
        assert 'href="/demo/ehr/patients/lcb-0000001/cds"' in row.group(1)
        assert 'href="/demo/ehr/patients/lcb-0000001/app"' in row.group(1)


@pytest.mark.parametrize("prefetch", ["1", "0"])
def test_patient_view_with_a_real_fhir_server(stack: Stack, stack_cohort: Path, stack_settings: Settings,
                                              prefetch: str) -> None:
    settings = stack_settings.model_copy(update={"cds": stack_settings.cds.model_copy(
        update={"request_budget_s": 60.0})})  # the shared FHIR server is slow to answer `patient=` searches
    with demo_client(settings) as client:
        r = client.get("/demo/ehr/patients/lcb-0000001/cds", params={"prefetch": prefetch})
        assert r.status_code == 200
        assert 'data-testid="status">HTTP 200<' in r.text, html.unescape(r.text[-3000:])
        request = raw_json(r.text, "raw-request")
        assert request["fhirServer"] == stack.fhir_base_url
        auth = request["fhirAuthorization"]
        assert auth["access_token"] == REDACTED and auth["token_type"] == "Bearer"
        assert auth["scope"].startswith("system/") and auth["subject"] == stack.backend_client_id
        assert ("prefetch" in request) == (prefetch == "1")
        cards = raw_json(r.text, "raw-response")["cards"]
        assert cards and len(re.findall(r'data-testid="card"', r.text)) == len(cards)
        text = json.dumps(cards)
        assert "could not be checked" not in text.lower() or prefetch == "0", text


def test_app_page_starts_an_ehr_launch(stack: Stack, stack_cohort: Path, stack_settings: Settings) -> None:
    context = '{"view":"timeline","patient":"lcb-0000001"}'
    with demo_client(stack_settings) as client:
        r = client.get("/demo/ehr/patients/lcb-0000001/app", params={"appContext": context})
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert f"frame-src 'self' {stack.smart_issuer}" in csp and "script" not in csp
        src = html.unescape(re.search(r'data-testid="smart-frame"[^>]*src="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
        query = parse_qs(urlsplit(src).query)
        assert urlsplit(src).path == "/app/launch" and query["iss"] == [stack.fhir_base_url]
        launch = query["launch"][0]
        assert json.loads(base64.urlsafe_b64decode(launch + "=" * (-len(launch) % 4))) == {
            "patient": "lcb-0000001", "practitioner": "demo-clinician", "need_patient_banner": False,
            "appContext": context}
        started = client.get(src, follow_redirects=False)  # the app's own launch route
        assert started.status_code == 302
        location = urlsplit(started.headers["location"])
        assert f"{location.scheme}://{location.netloc}" == stack.smart_issuer
        assert parse_qs(location.query)["launch"] == [launch]
        assert parse_qs(location.query)["aud"] == [stack.fhir_base_url]
