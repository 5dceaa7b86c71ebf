"""The app's pages, security headers, CSRF, error pages and launch negatives, in-process (no servers).

The assessment is hand-built (tests/smart_app/builders.py); the real pipeline, the authorization server and
the FHIR server are exercised by test_e2e_browser.py against the local stack.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from risk.store.audit import recent_audit
from smart_app.store import LaunchMode, SmartSessionRow, hash_cookie
from tests.smart_app.builders import PATIENT, TRACKING_UID, sign_in, smart_of


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.csrf: list[str] = []
        self.forms: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("href", "src", "action"):
            if a.get(key):
                self.urls.append(a[key] or "")
        if tag == "form":
            self.forms.append(a.get("method") or "get")
        if tag == "input" and a.get("name") == "csrf_token":
            self.csrf.append(a.get("value") or "")
        if tag == "script":
            self.inline_scripts += 1
        if any(k.startswith("on") for k in a) or "style" in a:
            raise AssertionError(f"inline handler or style on <{tag}>: CSP forbids it")


def parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


def value_of(html: str, testid: str) -> float:
    m = re.search(rf'data-testid="{testid}"[^>]*>\s*<dt>.*?data-value="([0-9.e-]+)"', html, re.S)
    assert m, f"no data-value under {testid}"
    return float(m.group(1))


PAGES = ["/app/", "/app/timeline", "/app/explanation", "/app/actions"]


def test_landing_without_session_offers_standalone_launch(client: TestClient) -> None:
    r = client.get("/app/")
    assert r.status_code == 200
    assert 'href="/app/launch"' in r.text
    assert "not for clinical use" in r.text


@pytest.mark.parametrize("path", [*PAGES[1:], "/app/key-image/1.png", "/app/source/1"])
def test_pages_need_a_session(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401 and 'data-error-code="no-session"' in r.text


def test_security_headers_on_pages_errors_and_static(client: TestClient) -> None:
    sign_in(client)
    for path in ("/app/", "/app/nowhere", "/app/static/app.css"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    assert client.get("/app/nowhere").status_code == 404


def test_frame_ancestors_come_from_settings(tmp_path: object) -> None:
    from risk.app import create_app
    from risk.config import load_settings

    s = load_settings(store={"url": f"sqlite:///{tmp_path}/x.db"},
                      smart={"frame_ancestors": ["https://ehr.example.org"], "secure_cookies": False})
    with TestClient(create_app(s)) as c:
        assert "frame-ancestors https://ehr.example.org" in c.get("/app/").headers["content-security-policy"]


def test_overview_shows_the_assessment(client: TestClient) -> None:
    sign_in(client)
    r = client.get("/app/")
    assert r.status_code == 200, r.text
    html = r.text
    assert value_of(html, "plcom2012") == pytest.approx(0.0412)
    assert value_of(html, "fusion") == pytest.approx(0.0873)
    assert ">4.1%<" in html and ">8.7%<" in html
    assert 'data-low="0.051" data-high="0.14"' in html and "5.1% – 14.0%" in html
    assert "version 1.3.0" in html and "calibrator isotonic-2026-05" in html and "trained on synthetic data" in html
    assert "Lung-RADS v2022 4B" in html and 'data-testid="category-due">2026-06-15<' in html
    assert "USPSTF 2021" in html and "CMS 2022 (Medicare)" in html and "Cannot tell" in html
    assert "Some data is stale" in html and "stale (limit 120 days)" in html
    assert 'data-testid="patient-banner"' in html and "Ada Quinn" in html and "MRN-0042" in html
    assert 'data-testid="synthetic-banner"' in html
    assert r.headers["cache-control"] == "no-store"


def test_patient_banner_follows_need_patient_banner(client: TestClient) -> None:
    sign_in(client, need_patient_banner=False)
    assert 'data-testid="patient-banner"' not in client.get("/app/").text


def test_the_assessment_is_computed_once_per_session(client: TestClient) -> None:
    sign_in(client)
    for p in PAGES:
        assert client.get(p).status_code == 200
    assert smart_of(client).assessor.calls == 1  # type: ignore[attr-defined]


def test_timeline_has_charts_growth_and_a_proxied_key_image(client: TestClient) -> None:
    sign_in(client)
    html = client.get("/app/timeline").text
    assert html.count('data-testid="nodule"') == 2
    assert html.count('<svg class="chart"') == 4
    assert 'src="/app/key-image/1.png"' in html
    assert "NELSON positive" in html and 'data-testid="vdt" data-value=' in html
    assert "2025-05-20" in html and "2026-05-18" in html
    # no PACS configured in this test: the proxy answers with a placeholder image, never a redirect to the PACS
    img = client.get("/app/key-image/1.png")
    assert img.status_code == 503 and img.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/app/key-image/2.png").status_code == 404  # N2 names no slice
    assert client.get("/app/key-image/9.png").status_code == 404


def test_app_context_selects_the_nodule(client: TestClient) -> None:
    sign_in(client, app_context=f'{{"trackingUid":"{TRACKING_UID}","assessmentId":"asm-old"}}')
    html = client.get("/app/timeline").text
    first = html.index('data-testid="nodule"')
    assert html.index(f'data-tracking-uid="{TRACKING_UID}"') > first
    assert "opened from the CDS card" in html
    ov = client.get("/app/").text
    assert "Opened from a CDS card about asm-old" in ov and "may have changed" in ov


def test_explanation_lists_drivers_missing_data_and_source_links(client: TestClient) -> None:
    sign_in(client)
    html = client.get("/app/explanation").text
    assert "nodule growth" in html and "Highest education level" in html
    assert 'href="/app/source/2"' in html and "Observation/smk-1" in html
    assert "1.2.3.4.2" in html  # the imaging study is named


def test_no_phi_in_any_url_and_no_inline_script(client: TestClient) -> None:
    sign_in(client)
    for p in PAGES:
        html = client.get(p).text
        c = parse(html)
        assert c.inline_scripts == 0
        for url in c.urls:
            for phi in (PATIENT, "MRN-0042", "Ada", "1958", "1.2.3.4", TRACKING_UID, "smk-1"):
                assert phi not in url, (p, url)
        assert all(m == "post" for m in c.forms)
        assert c.csrf and len(set(c.csrf)) == 1 and len(c.csrf[0]) >= 32


def test_actions_follow_the_granted_scopes(client: TestClient) -> None:
    sign_in(client, scope="launch patient/*.rs patient/RiskAssessment.c")
    html = client.get("/app/actions").text
    assert 'action="/app/actions/risk-assessment"' in html
    assert 'action="/app/actions/service-request"' not in html  # no ServiceRequest.c granted
    assert "Diagnostic chest CT" in html and "&#34;status&#34;: &#34;draft&#34;" in html

    sign_in(client, scope="launch patient/*.read")  # v1 read-only grant
    html = client.get("/app/actions").text
    assert 'action="/app/actions/risk-assessment"' not in html and 'data-testid="ra-scope-missing"' in html


def test_posts_need_csrf_and_our_origin(client: TestClient) -> None:
    sign_in(client, scope="launch patient/*.rs patient/RiskAssessment.c")
    token = parse(client.get("/app/actions").text).csrf[0]
    r = client.post("/app/actions/risk-assessment", data={})
    assert r.status_code == 403 and 'data-error-code="csrf-failed"' in r.text
    r = client.post("/app/actions/risk-assessment", data={"csrf_token": token + "x"})
    assert r.status_code == 403 and 'data-error-code="csrf-failed"' in r.text
    r = client.post("/app/refresh", data={"csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and 'data-error-code="csrf-failed"' in r.text
    r = client.post("/app/refresh", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303


def test_write_without_the_scope_is_refused_with_a_page(client: TestClient) -> None:
    sign_in(client, scope="launch patient/*.rs")
    token = parse(client.get("/app/actions").text).csrf[0]
    r = client.post("/app/actions/risk-assessment", data={"csrf_token": token, "assessment_id": "asm-1"})
    assert r.status_code == 403 and 'data-error-code="scope-denied"' in r.text
    r = client.post("/app/actions/service-request", data={"csrf_token": token, "assessment_id": "asm-1"})
    assert r.status_code == 403 and 'data-error-code="scope-denied"' in r.text


def test_stale_assessment_id_is_not_saved(client: TestClient) -> None:
    sign_in(client, scope="launch patient/*.rs patient/RiskAssessment.c")
    token = parse(client.get("/app/actions").text).csrf[0]
    r = client.post("/app/actions/risk-assessment", data={"csrf_token": token, "assessment_id": "asm-OLD"})
    assert r.status_code == 404 and "no longer current" in r.text


def test_logout_discards_the_session(client: TestClient) -> None:
    cookie = sign_in(client)
    token = parse(client.get("/app/").text).csrf[0]
    r = client.post("/app/logout", data={"csrf_token": token})
    assert r.status_code == 200 and "signed out" in r.text
    assert smart_of(client).store.get(cookie) is None
    with smart_of(client).parent.state.db.session() as s:
        events = recent_audit(s, action="smart.logout")
        assert [(e.actor, e.entity) for e in events] == [("Practitioner/pulmo-1", f"Patient/{PATIENT}")]
    client.cookies.set(smart_of(client).cookies.name, cookie)
    assert client.get("/app/timeline").status_code == 401


def test_expired_token_without_refresh_token_shows_an_error_page(client: TestClient) -> None:
    sign_in(client, expires_in_s=-5)
    r = client.get("/app/")
    assert r.status_code == 401 and 'data-error-code="token-expired"' in r.text
    assert "no refresh token" in r.text


def test_expired_token_whose_refresh_fails_shows_an_error_page(client: TestClient) -> None:
    sign_in(client, expires_in_s=-5, refresh_token="rt")  # token endpoint 127.0.0.1:9 refuses connections
    r = client.get("/app/explanation")
    assert r.status_code == 401 and 'data-error-code="token-expired"' in r.text
    assert "could not be refreshed" in r.text


def test_token_expiring_soon_is_still_used_when_refresh_fails(client: TestClient) -> None:
    sign_in(client, expires_in_s=30, refresh_token="rt")  # inside the 60 s margin, but still valid
    assert client.get("/app/").status_code == 200


# --- launch and callback negatives (no authorization server needed) ---------------------------------
def _pending(client: TestClient) -> str:
    smart = smart_of(client)
    cookie, _ = smart.store.create_pending(
        launch_mode=LaunchMode.EHR, iss="http://127.0.0.1:9/fhir/R4", client_id="lungrisk-app",
        redirect_uri=smart.redirect_uri, token_endpoint="http://127.0.0.1:9/token", jwks_uri=None, auth_issuer=None,
        requested_scope="launch", state="expected-state-" + "x" * 30, code_verifier="v" * 43)
    client.cookies.set(smart.cookies.name, cookie)
    return cookie


def test_callback_state_mismatch(client: TestClient) -> None:
    cookie = _pending(client)
    r = client.get("/app/callback", params={"code": "c", "state": "attacker-state"})
    assert r.status_code == 400 and 'data-error-code="state-mismatch"' in r.text
    assert smart_of(client).store.get(cookie) is None  # the pending sign-in is void


def test_callback_without_the_session_cookie(client: TestClient) -> None:
    _pending(client)
    client.cookies.clear()
    r = client.get("/app/callback", params={"code": "c", "state": "expected-state-" + "x" * 30})
    assert r.status_code == 400 and 'data-error-code="state-mismatch"' in r.text


def test_callback_with_the_verifier_missing(client: TestClient) -> None:
    cookie = _pending(client)
    with smart_of(client).parent.state.db.session() as s:
        s.execute(update(SmartSessionRow).where(SmartSessionRow.id_hash == hash_cookie(cookie))
                  .values(code_verifier=None))
    r = client.get("/app/callback", params={"code": "c", "state": "expected-state-" + "x" * 30})
    assert r.status_code == 400 and 'data-error-code="missing-pkce-verifier"' in r.text


def test_callback_access_denied(client: TestClient) -> None:
    _pending(client)
    r = client.get("/app/callback", params={"error": "access_denied", "error_description": "user said no <b>",
                                            "state": "expected-state-" + "x" * 30})
    assert r.status_code == 403 and 'data-error-code="authorization-denied"' in r.text
    assert "<b>" not in r.text


def test_launch_from_an_unknown_issuer_is_refused(client: TestClient) -> None:
    r = client.get("/app/launch", params={"iss": "https://evil.example/fhir", "launch": "x"})
    assert r.status_code == 400 and 'data-error-code="issuer-not-allowed"' in r.text
    assert "set-cookie" not in r.headers


def test_launch_discovery_failure(client: TestClient) -> None:
    r = client.get("/app/launch", params={"iss": "http://127.0.0.1:9/fhir/R4", "launch": "x"})
    assert r.status_code == 502 and 'data-error-code="discovery-failed"' in r.text


def test_launch_parameter_errors(client: TestClient) -> None:
    assert 'data-error-code="missing-launch-parameter"' in client.get("/app/launch", params={"launch": "x"}).text
    assert client.get("/app/launch", params={"iss": "http://127.0.0.1:9/fhir/R4", "launch": " "}).status_code == 400


def test_an_unexpected_failure_is_a_page_not_a_traceback(client: TestClient) -> None:
    sign_in(client)

    class Broken:
        def header(self, request: object) -> None:
            raise RuntimeError("boom: secret internals")

        def assess(self, request: object) -> None:
            raise RuntimeError("boom")

    smart_of(client).assessor = Broken()  # type: ignore[assignment]
    # Starlette re-raises after sending the error page (so that the server logs it): see what the browser gets
    quiet = TestClient(client.app, base_url="http://127.0.0.1:18700", raise_server_exceptions=False)
    quiet.cookies = client.cookies
    r = quiet.get("/app/")
    assert r.status_code == 500 and 'data-error-code="internal-error"' in r.text
    assert "boom" not in r.text and "Traceback" not in r.text
