"""The landing page and the simulated EHR in-process, on a 3-patient synthetic cohort read from its folders.

The chart page's CDS call is real: the demo EHR signs an ES384 JWT with its own key, the service verifies it against
the issuer registered through settings (cds.issuers from the env file ``risk.demo.keys`` writes), the prefetch is
filled from the EHR's FHIR data and the cards are the service's own."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import Environment, Settings
from risk.demo.patients import patient_row
from risk.demo.web import BANNER, card_view, launch_parameter
from tests.demo.conftest import BASE, cohort_patients, demo_client

LANDING_LINKS = ("/demo/ehr", "/worklist/", "/docs", "/cds-services", "/api/calculators", "/health", "/version")


def raw_json(page: str, testid: str) -> Any:
    match = re.search(rf'data-testid="{testid}">.*?<pre>(.*?)</pre>', page, re.S)
    assert match, f"no {testid} block"
    return json.loads(html.unescape(match.group(1)))


def test_landing_page_lists_every_surface_and_says_synthetic(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    hrefs = set(re.findall(r'href="([^"]+)"', r.text))
    for link in LANDING_LINKS:
        assert link in hrefs, link
    assert "Synthetic data — not for clinical use." in r.text
    assert BANNER in r.text
    assert "signed JWT (iss urn:lungrisk:demo-ehr:test)" in r.text  # the deployment facts say how CDS is secured
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script" not in csp and "frame-ancestors 'none'" in csp
    assert "<script" not in r.text


def test_every_link_on_the_landing_page_leads_somewhere(client: TestClient) -> None:
    hrefs = {h for h in re.findall(r'href="(/[^"]*)"', client.get("/").text) if not h.startswith("/demo/static")}
    for href in sorted(hrefs):
        r = client.get(href, follow_redirects=False)
        assert r.status_code != 404 and r.status_code < 500, f"{href}: {r.status_code}"
    assert client.get("/cds-services").status_code == 401  # the real endpoint still wants a CDS client JWT


@pytest.mark.parametrize("environment", [Environment.TEST, Environment.PRODUCTION])
def test_not_mounted_outside_the_demo_environment(environment: Environment, file_settings: Settings) -> None:
    app = create_app(file_settings.model_copy(update={"environment": environment}))
    paths = {getattr(r, "path", None) for r in app.routes}
    assert "/" not in paths and "/demo/ehr" not in paths and "/demo/static" not in paths
    assert not hasattr(app.state, "demo_ehr")


def test_patient_list_shows_the_cohort(client: TestClient, file_cohort: Path) -> None:
    patients = cohort_patients(file_cohort)
    r = client.get("/demo/ehr")
    assert r.status_code == 200
    rows = re.findall(r'<tr data-patient="([^"]+)">(.*?)</tr>', r.text, re.S)
    assert [pid for pid, _ in rows] == sorted(patients)
    today = date.today()
    for pid, cells in rows:
        expected = patient_row(patients[pid], today)
        assert expected.age_years is not None and expected.sex and expected.mrn
        text = re.sub(r"<[^>]+>", " ", cells)
        assert expected.name in html.unescape(text)
        assert f" {expected.age_years} " in text and f" {expected.sex} " in text and expected.mrn in text
        assert f'href="/demo/ehr/patients/{pid}/cds"' in cells
        assert "/app" not in cells  # no FHIR server (a folder): the SMART app cannot be launched
    assert "1–3 of 3" in r.text


def test_patient_list_pages_and_searches(demo_env: Any, file_cohort: Path, tmp_path: Path) -> None:
    settings = demo_env(RISK_STORE__URL=f"sqlite:///{tmp_path}/p.db", RISK_DEMO__PATIENTS_PER_PAGE="2",
                        RISK_FHIR__BUNDLE_DIR=str(file_cohort / "fhir" / "bundles"))
    with demo_client(settings) as client:
        first = client.get("/demo/ehr")
        ids = re.findall(r'<tr data-patient="([^"]+)">', first.text)
        assert ids == ["lcb-0000001", "lcb-0000002"] and "1–2 of 3" in first.text
        nxt = html.unescape(re.search(r'href="([^"]+)" rel="next"', first.text).group(1))  # type: ignore[union-attr]
        second = client.get(nxt)
        assert re.findall(r'<tr data-patient="([^"]+)">', second.text) == ["lcb-0000003"]
        assert 'rel="next"' not in second.text and 'rel="prev"' in second.text
        found = client.get("/demo/ehr", params={"q": "LCB-0000002"})
        assert re.findall(r'<tr data-patient="([^"]+)">', found.text) == ["lcb-0000002"]
        none = client.get("/demo/ehr", params={"q": "nobody"})
        assert 'data-testid="no-patients"' in none.text
        bad = client.get("/demo/ehr", params={"cursor": "not-a-page"})
        assert bad.status_code == 422 and "cursor" in bad.text


def test_chart_runs_patient_view_and_renders_the_services_cards(client: TestClient, file_cohort: Path) -> None:
    shown = 0
    for pid in sorted(cohort_patients(file_cohort)):
        r = client.get(f"/demo/ehr/patients/{pid}/cds")
        assert r.status_code == 200, r.text[-2000:]
        assert 'data-testid="status">HTTP 200<' in r.text, re.search(r'hook-error">(.*?)</div>', r.text, re.S)
        response = raw_json(r.text, "raw-response")
        request = raw_json(r.text, "raw-request")
        assert request["hook"] == "patient-view" and request["context"] == {
            "userId": "Practitioner/demo-clinician", "patientId": pid}
        assert set(request["prefetch"]) == {"patient", "observations", "conditions", "familyHistory",
                                            "imagingStudies"}
        assert request["prefetch"]["patient"]["id"] == pid
        assert "fhirServer" not in request  # a folder, not a server: everything goes in the prefetch
        articles = re.findall(r'<article class="cds-card card-(\w+)".*?</article>', r.text, re.S)
        summaries = [html.unescape(s) for s in re.findall(r'<h2 class="card-summary">(.*?)</h2>', r.text)]
        assert len(articles) == len(response["cards"])
        assert summaries == [c["summary"] for c in response["cards"]]
        assert articles == [c["indicator"] for c in response["cards"]]
        for card in response["cards"]:
            smart = [lk for lk in card["links"] if lk["type"] == "smart"]
            assert smart and smart[0]["url"] == f"{BASE}/app/launch"
        shown += len(articles)
        assert "<script" not in r.text and "script" not in r.headers["content-security-policy"]
    assert shown >= 1, "the cohort produced no card at all"


def test_chart_without_prefetch_reports_what_the_service_answered(client: TestClient) -> None:
    # no prefetch and no fhirServer: the service cannot get the data and says so (412); the page shows it, no 500
    r = client.get("/demo/ehr/patients/lcb-0000001/cds", params={"prefetch": "0"})
    assert r.status_code == 200
    assert 'data-testid="status">HTTP 412<' in r.text
    assert "HTTP 412" in re.search(r'hook-error">(.*?)</div>', r.text, re.S).group(1)  # type: ignore[union-attr]
    assert "prefetch" not in raw_json(r.text, "raw-request")


def test_unregistered_demo_ehr_is_refused_and_the_page_says_why(demo_env: Any, file_cohort: Path,
                                                                 tmp_path: Path) -> None:
    settings = demo_env(RISK_STORE__URL=f"sqlite:///{tmp_path}/u.db", RISK_CDS__ISSUERS="[]",
                        RISK_FHIR__BUNDLE_DIR=str(file_cohort / "fhir" / "bundles"))
    with demo_client(settings) as client:
        r = client.get("/demo/ehr/patients/lcb-0000001/cds")
        assert r.status_code == 200
        assert 'data-testid="status">HTTP 401<' in r.text
        error = html.unescape(re.search(r'hook-error">(.*?)</div>', r.text, re.S).group(1))  # type: ignore[union-attr]
        assert "refused the demo EHR's JWT (iss urn:lungrisk:demo-ehr:test" in error and "RISK_CDS__ISSUERS" in error
        assert "is not in cds.issuers" in client.get("/").text


def test_open_mode_without_a_key_works_unsigned(demo_env: Any, file_cohort: Path, tmp_path: Path) -> None:
    settings = demo_env(RISK_STORE__URL=f"sqlite:///{tmp_path}/o.db", RISK_CDS__ISSUERS="[]",
                        RISK_CDS__OPEN_MODE="true", RISK_DEMO__CDS_CLIENT_JWKS_FILE=None,
                        RISK_FHIR__BUNDLE_DIR=str(file_cohort / "fhir" / "bundles"),
                        RISK_DICOMWEB__FILE_DIR=str(file_cohort / "dicom"))
    assert settings.demo.cds_client_jwks_file is None
    with demo_client(settings) as client:
        r = client.get("/demo/ehr/patients/lcb-0000002/cds")
        assert 'data-testid="status">HTTP 200<' in r.text and "Unsigned call" in r.text
        assert "OPEN MODE" in client.get("/").text


@pytest.mark.parametrize(("path", "status", "field"), [
    ("/demo/ehr/patients/bad%20id/cds", 422, "patient_id"),
    ("/demo/ehr/patients/lcb-9999999/cds", 404, None),
    ("/demo/ehr/patients/lcb-0000001/cds?prefetch=2", 422, "prefetch"),
    ("/demo/ehr/patients/lcb-0000001/app?appContext=" + "x" * 2001, 422, "appContext"),
])
def test_bad_requests_get_a_page_naming_the_problem(client: TestClient, path: str, status: int,
                                                    field: str | None) -> None:
    r = client.get(path)
    assert r.status_code == status
    assert 'data-testid="error"' in r.text and BANNER in r.text
    if field:
        assert f"<code>{field}</code>" in r.text


def test_app_page_needs_a_fhir_server(client: TestClient) -> None:
    r = client.get("/demo/ehr/patients/lcb-0000001/app")
    assert r.status_code == 503 and "needs a FHIR server" in r.text


def test_chart_redirects_to_the_cds_tab(client: TestClient) -> None:
    r = client.get("/demo/ehr/patients/lcb-0000001", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/demo/ehr/patients/lcb-0000001/cds"


def test_discovery_page_shows_the_services_as_the_demo_ehr_receives_them(client: TestClient) -> None:
    r = client.get("/demo/ehr/cds-services")
    assert r.status_code == 200
    services = raw_json(r.text.replace('<details class="raw" open>', '<details data-testid="d">'), "d")["services"]
    assert {s["hook"] for s in services} == {"patient-view", "order-select", "order-sign"}


def test_host_mismatch_warns_that_launches_will_fail(file_settings: Settings) -> None:
    with demo_client(file_settings) as client:
        r = client.get("http://localhost:18700/demo/ehr")
        assert 'data-testid="host-warning"' in r.text
        assert 'data-testid="host-warning"' not in client.get("/demo/ehr").text


# --- pure pieces ------------------------------------------------------------------------------------------------
def test_launch_parameter_is_unpadded_base64url_json() -> None:
    value = launch_parameter("p-1", "doc-1", '{"view":"timeline"}')
    assert "=" not in value and "+" not in value and "/" not in value
    decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    assert decoded == {"patient": "p-1", "practitioner": "doc-1", "need_patient_banner": False,
                       "appContext": '{"view":"timeline"}'}
    assert "appContext" not in json.loads(base64.urlsafe_b64decode(launch_parameter("p", "d", None) + "=="))


def test_card_view_routes_smart_links_through_the_ehr_and_drops_unsafe_ones() -> None:
    launch = f"{BASE}/app/launch"
    card = {"summary": "s", "indicator": "bogus", "source": {"label": "L", "url": "javascript:alert(1)"},
            "links": [{"label": "App", "url": launch, "type": "smart", "appContext": '{"view":"actions"}'},
                      {"label": "Other app", "url": "https://elsewhere.example/launch", "type": "smart"},
                      {"label": "Bad", "url": "javascript:alert(1)", "type": "absolute"},
                      {"label": "Guideline", "url": "https://example.org/g", "type": "absolute"}]}
    view = card_view(card, "p-1", launch)
    assert view["indicator"] == "info" and view["source_url"] is None
    assert len(view["app_links"]) == 1
    query = parse_qs(urlsplit(view["app_links"][0]["href"]).query)
    assert view["app_links"][0]["href"].startswith("/demo/ehr/patients/p-1/app?")
    assert query == {"appContext": ['{"view":"actions"}']}
    assert [(o["label"], o["url"]) for o in view["other_links"]] == [("Other app", None),
                                                                    ("Guideline", "https://example.org/g")]
