"""End to end in headless Chromium against the local stack: EHR launch through the real authorization server,
the pages' numbers against risk.assess run on the same snapshot (and the generator's truth), write-back read
back from the FHIR server, and the negative cases, each with a screenshot under test-artifacts/smart_app/.

The service under test is a real uvicorn process on 127.0.0.1:18700 (the redirect URI the AS knows).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import polars as pl
import pytest
from sqlalchemy import update

from risk.assess import assess
from risk.deadline import Deadline
from risk.domain import Assessment, PatientSnapshot
from risk.domain.assessment import model_label
from risk.loading.backend_auth import BackendServicesAuth, read_private_jwks
from risk.smart.pkce import new_pkce
from risk.snapshots import build_snapshot, pacs_imaging
from risk.sources.dicomweb import open_dicom_source
from risk.sources.fhir_rest import RestFhirSource
from risk.store.db import Database
from smart_app.store import SessionPhase, SmartSessionRow, hash_cookie
from smart_app.writeback import orderable_recommendation
from tests.conftest import Stack
from tests.smart_app.e2e import (
    APP_URL,
    EHR_ORIGIN,
    AppProcess,
    chromium,
    ehr_chart_url,
    ehr_server,
    fhir_get,
    fusion_version,
    launch_url,
    screenshot,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    proc = AppProcess(stack, tmp_path_factory.mktemp("app"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def ehr() -> Iterator[str]:
    with ehr_server(EHR_ORIGIN) as origin:
        yield origin


@pytest.fixture
def page(browser: Any, app: AppProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    # a page gathers the patient's record from the FHIR server and the PACS; the shared test servers can be slow
    # while the rest of the suite runs, so waits are generous (they end as soon as the page is there)
    context.set_default_timeout(120_000)
    context.set_default_navigation_timeout(180_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


_predictors: dict[str, Any] = {}


def fusion_predictor() -> Any:
    """The same fusion model the app under test loads (None when no artifact is shipped)."""
    version = fusion_version()
    if version is None:
        return None
    if version not in _predictors:
        from fusion_models.registry import SHIPPED_REGISTRY
        from fusion_models.runtime import load_predictor

        _predictors[version] = load_predictor(SHIPPED_REGISTRY, version)
    return _predictors[version]


def expected(stack: Stack, patient: str) -> tuple[PatientSnapshot, Assessment]:
    """What risk.assess says about the same patient, from the same servers, today (read with a backend token)."""
    settings = stack.settings()
    source = RestFhirSource(stack.fhir_base_url, token=backend_token(stack), timeout_s=30)
    dicom = open_dicom_source(settings.dicomweb)
    snap = build_snapshot(source, patient, as_of=datetime.now(UTC).date(), deadline=Deadline(180),
                          imaging=pacs_imaging(dicom) if dicom is not None else None)
    source.close()
    return snap, assess(snap, fusion=fusion_predictor())


def backend_token(stack: Stack, scope: str = "system/*.rs") -> str:
    """A SMART Backend Services token: the test checks the EHR side with its own credentials, not the app's."""
    auth = BackendServicesAuth(stack.token_url, stack.backend_client_id,
                               read_private_jwks(stack.backend_private_jwks_file), scope=scope, timeout_s=30)
    try:
        return auth.token()
    finally:
        auth.close()


def data_value(frame: Any, selector: str) -> float:
    return float(frame.locator(selector).first.get_attribute("data-value"))


def app_db(app: AppProcess) -> Database:
    return Database(f"sqlite:///{app.db_path}")


def ehr_launch_in_iframe(page: Any, stack: Stack, patient: str, **extra: Any) -> Any:
    """Open the simulated EHR's chart, which embeds the app (1024x768 iframe) and launches it; returns the frame."""
    page.goto(ehr_chart_url(EHR_ORIGIN, launch_url(stack, patient, **extra)), wait_until="commit")
    frame = page.frame_locator("#app")
    frame.locator("h1").first.wait_for()
    return frame


def walk_to_callback(page: Any, start: str, tweak_authorize: Any = None) -> str:
    """Follow the launch's redirects one hop at a time with the browser's own cookies, up to (not into) the
    app's callback, and return the callback URL. (Playwright cannot intercept redirect hops, so a test that
    must change the authorization request or act before the callback walks the hops itself.)"""
    url = start
    for _ in range(20):
        r = page.request.get(url, max_redirects=0)
        location = r.headers.get("location")
        assert r.status in (301, 302, 303, 307) and location, f"{url} answered {r.status}: {r.text()[:300]}"
        nxt = urljoin(url, location)
        if nxt.startswith(f"{APP_URL}/app/callback"):
            return nxt
        if tweak_authorize is not None and urlsplit(nxt).path.endswith("/auth") and "response_type=" in nxt:
            nxt = tweak_authorize(nxt)
        url = nxt
    raise AssertionError("the launch did not reach the callback in 20 redirects")


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


# --- the happy path ----------------------------------------------------------------------------------------
def test_ehr_launch_shows_the_assessment_of_the_synthetic_patient(page: Any, stack: Stack, app: AppProcess,
                                                                   patient_id: str, ehr: str,
                                                                   truth: dict[str, pl.DataFrame]) -> None:
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    frame = ehr_launch_in_iframe(page, stack, patient_id, need_patient_banner=True)
    assert frame.locator("h1").first.inner_text() == "Lung cancer risk overview", app.log_tail()
    snap, want = expected(stack, patient_id)

    # the banner names the patient the EHR launched with
    banner = frame.locator('[data-testid="patient-banner"]').inner_text()
    mrn = truth["patients"].filter(pl.col("patient_id") == patient_id)["mrn"][0]
    assert mrn in banner
    assert frame.locator('[data-testid="synthetic-banner"]').is_visible()

    plco = want.risk("plcom2012")
    if plco is not None:
        assert data_value(frame, '[data-testid="plcom2012"] [data-value]') == pytest.approx(plco.probability,
                                                                                           abs=1e-9)
    else:
        assert "Cannot score" in frame.locator('[data-testid="plcom2012"]').inner_text()
    fusion = next((r for r in want.risks if r.learned), None)
    fusion_text = frame.locator('[data-testid="fusion"]').inner_text()
    if fusion is None:
        assert "No fusion model is loaded" in fusion_text or "Cannot score" in fusion_text
    else:
        assert data_value(frame, '[data-testid="fusion"] [data-value]') == pytest.approx(fusion.probability)
        assert fusion.model_version in fusion_text
        if fusion.interval is not None:
            shown = frame.locator('[data-testid="fusion-interval"]')
            assert float(shown.get_attribute("data-low")) == pytest.approx(fusion.interval[0])
            assert float(shown.get_attribute("data-high")) == pytest.approx(fusion.interval[1])
    category = frame.locator('[data-testid="category-section"]').inner_text()
    if want.patient_category is not None:
        assert f"{want.patient_category.guideline} {want.patient_category.category}" in category
        if want.patient_category.due_date:
            assert want.patient_category.due_date.isoformat() in category
    recs = frame.locator('[data-testid="recommendations"]').inner_text()
    for rec in want.recommendations:
        assert rec.text in recs
        if rec.due_date:
            assert rec.due_date.isoformat() in recs
    elig = frame.locator('[data-testid="eligibility"]').inner_text()
    for e in want.eligibility:
        assert e.reason.split(";")[0] in elig
    screenshot(page.locator("#app"), "01-overview-in-ehr-iframe-1024x768")

    # the timeline: per nodule, the volumes the SR reported (generator truth) and the growth call of the assessment
    frame.get_by_role("link", name="Nodule timeline").click()
    frame.locator('h1:text("Nodule timeline")').wait_for()
    nodules = truth["nodules"].filter((pl.col("patient_id") == patient_id) & pl.col("detected_by_ai"))
    shown = frame.locator('[data-testid="nodule"]')
    assert shown.count() == len(snap.nodule_tracks) >= 1
    for i in range(shown.count()):
        card = shown.nth(i)
        uid = card.get_attribute("data-tracking-uid")
        track = next(t for t in snap.nodule_tracks if uid in {o.tracking_uid for o in t.observations})
        if track.growth is not None and track.growth.vdt_days is not None:
            assert float(card.locator('[data-testid="vdt"]').get_attribute("data-value")) == pytest.approx(
                track.growth.vdt_days)
        rows = card.locator("table.measurements tbody tr")
        assert rows.count() == len(track.observations)
        for j, obs in enumerate(track.observations):
            assert obs.study_date.isoformat() in rows.nth(j).inner_text()
            t = nodules.filter((pl.col("tracking_uid") == uid) & (pl.col("study_date") == obs.study_date))
            if obs.volume_mm3 is not None and t.height and t["sr_volume_mm3"][0] is not None:
                shown_volume = float(rows.nth(j).locator("td[data-value]").nth(1).get_attribute("data-value"))
                assert shown_volume == pytest.approx(float(t["sr_volume_mm3"][0]), rel=1e-3)
        assert card.locator("svg.chart").count() == 2
    key = frame.locator('[data-testid="key-image"]').first
    if key.count():
        key.scroll_into_view_if_needed()
        assert page.evaluate("() => true")  # the page is alive
        assert frame.locator('[data-testid="key-image"]').first.evaluate("img => img.naturalWidth") > 0
    screenshot(page.locator("#app"), "02-timeline-in-ehr-iframe-1024x768")
    # the key image came through the app: the browser never talked to the PACS (nor to the FHIR server)
    pacs = stack.dicomweb_url.split("/dicom-web")[0]
    assert not [u for u in requested if u.startswith((pacs, stack.fhir_base_url))]
    assert [u for u in requested if "/app/key-image/" in u] or not key.count()
    screenshot_full(page, stack, "timeline")

    frame.get_by_role("link", name="Explanation").click()
    frame.locator('h1:text("Why this estimate")').wait_for()
    drivers = frame.locator('[data-testid="drivers"]').inner_text()
    for r in want.risks:
        if r.contributions:
            assert model_label(r.model) in drivers
    assert frame.locator('[data-testid="sources"] a[href^="/app/source/"]').count() >= 1
    screenshot(page.locator("#app"), "03-explanation-in-ehr-iframe-1024x768")


def screenshot_full(page: Any, stack: Stack, name: str) -> None:
    """The app page itself (outside the iframe), full height, for reading."""
    del stack
    full = page.context.new_page()
    full.set_viewport_size({"width": 1024, "height": 768})
    full.goto(f"{APP_URL}/app/{'' if name == 'overview' else name}")
    full.wait_for_load_state("networkidle")
    screenshot(full, f"full-{name}")
    full.close()


def test_cookie_and_headers_of_a_signed_in_session(page: Any, stack: Stack, patient_id: str) -> None:
    response_headers: dict[str, str] = {}

    def remember(resp: Any) -> None:
        if resp.url.rstrip("/").endswith("/app") and resp.request.resource_type == "document":
            response_headers.update(resp.headers)

    page.on("response", remember)
    page.goto(launch_url(stack, patient_id))
    page.locator("h1").first.wait_for()
    cookies = {c["name"]: c for c in page.context.cookies(APP_URL)}
    c = cookies["lungrisk_app"]
    assert c["httpOnly"] is True and c["sameSite"] == "Lax" and c["path"] == "/"
    assert len(c["value"]) >= 40
    # no token in the browser: not in cookies, not in the page, not in the URL
    html = page.content()
    assert "eyJ" not in c["value"] and "eyJ" not in html and "eyJ" not in page.url
    csp = response_headers["content-security-policy"]
    assert f"frame-ancestors 'self' {EHR_ORIGIN}" in csp and "script-src 'self'" in csp
    assert response_headers["cache-control"] == "no-store"
    assert page.url == f"{APP_URL}/app/"  # the code and state are gone from the address bar


def test_keyboard_navigation(page: Any, stack: Stack, patient_id: str) -> None:
    page.goto(launch_url(stack, patient_id))
    page.locator("h1").first.wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Nodule timeline":
            break
    else:
        pytest.fail("the Nodule timeline link cannot be reached with the keyboard")
    page.keyboard.press("Enter")
    page.locator('h1:text("Nodule timeline")').wait_for()


def test_frame_ancestors_block_an_unknown_ehr(page: Any, stack: Stack, patient_id: str) -> None:
    with ehr_server("http://127.0.0.1:18702") as other:
        refused: list[str] = []
        page.on("console", lambda msg: refused.append(msg.text) if "frame-ancestors" in msg.text else None)
        page.goto(ehr_chart_url(other, launch_url(stack, patient_id)))
        page.wait_for_timeout(4000)
        app_frames = [f for f in page.frames if f.url.startswith(APP_URL)]
        assert all(f.locator("h1").count() == 0 for f in app_frames)
        assert refused, "Chromium did not report a frame-ancestors violation"
        screenshot(page, "96-error-frame-ancestors-unknown-ehr")


def test_need_patient_banner_false_hides_the_banner(page: Any, stack: Stack, patient_id: str) -> None:
    page.goto(launch_url(stack, patient_id, need_patient_banner=False))
    page.locator("h1").first.wait_for()
    assert page.locator('[data-testid="patient-banner"]').count() == 0


def test_app_context_from_a_cds_card_opens_the_nodule(page: Any, stack: Stack, patient_id: str,
                                                      truth: dict[str, pl.DataFrame]) -> None:
    n = truth["nodules"].filter((pl.col("patient_id") == patient_id) & pl.col("detected_by_ai"))
    uid = str(n.sort("study_date")["tracking_uid"][-1])
    page.goto(launch_url(stack, patient_id, appContext={"trackingUid": uid, "assessmentId": "from-card"}))
    page.locator('h1:text("Nodule timeline")').wait_for()
    first = page.locator('[data-testid="nodule"]').first
    assert first.get_attribute("data-tracking-uid") == uid
    assert "opened from the CDS card" in first.inner_text()
    screenshot(page, "04-timeline-opened-from-cds-card")


def test_write_back_creates_the_risk_assessment(page: Any, stack: Stack, patient_id: str, app: AppProcess) -> None:
    page.goto(launch_url(stack, patient_id))
    page.locator("h1").first.wait_for()
    page.get_by_role("link", name="Actions").click()
    page.get_by_role("button", name="Save RiskAssessment").click()
    result = page.locator('[data-testid="action-result"]')
    result.wait_for()
    refs = page.locator('[data-testid="created-reference"]').inner_text().split(", ")
    assert refs and all(r.startswith("RiskAssessment/") for r in refs), app.log_tail()
    screenshot(page, "05-actions-risk-assessment-saved")
    token = backend_token(stack)
    saved = [fhir_get(stack, token, r) for r in refs]
    assert {s["subject"]["reference"] for s in saved} == {f"Patient/{patient_id}"}
    _, want = expected(stack, patient_id)
    plco = want.risk("plcom2012")
    if plco is not None:
        plco_ra = next(s for s in saved if "plcom2012" in s["method"]["text"])
        assert plco_ra["prediction"][0]["probabilityDecimal"] == pytest.approx(plco.probability, abs=1e-6)
    # the EHR side agrees: a search finds them
    found = fhir_get(stack, token, f"RiskAssessment?subject=Patient/{patient_id}")
    found_ids = {f"RiskAssessment/{e['resource']['id']}" for e in found.get("entry", [])}
    assert set(refs) <= found_ids



@pytest.fixture(scope="module")
def orderable_patient(stack: Stack, truth: dict[str, pl.DataFrame]) -> tuple[str, Assessment]:
    """A patient whose assessment recommends imaging the app can draft an order for."""
    for pid in truth["patients"]["patient_id"].to_list():
        _, want = expected(stack, pid)
        if orderable_recommendation(want) is not None:
            return pid, want
    pytest.fail("no patient in the cohort has an orderable recommendation")


def test_write_back_drafts_the_follow_up_order(page: Any, stack: Stack,
                                               orderable_patient: tuple[str, Assessment]) -> None:
    pid, want = orderable_patient
    rec = orderable_recommendation(want)
    assert rec is not None
    page.goto(launch_url(stack, pid))
    page.locator("h1").first.wait_for()
    page.get_by_role("link", name="Actions").click()
    assert rec.text in page.locator('[data-testid="draft-service-request"]').inner_text()
    page.get_by_role("button", name="Save draft order to the EHR").click()
    page.locator('[data-testid="created-reference"]').wait_for()
    ref = page.locator('[data-testid="created-reference"]').inner_text()
    assert ref.startswith("ServiceRequest/")
    screenshot(page, "06-actions-draft-order-saved")
    sr = fhir_get(stack, backend_token(stack), ref)
    assert sr["status"] == "draft" and sr["intent"] == "proposal"
    assert sr["subject"]["reference"] == f"Patient/{pid}"
    # the requester is the user, from the verified id_token's fhirUser claim
    assert sr["requester"]["reference"] == "Practitioner/pulmo-1"
    when = sr.get("occurrencePeriod", {}).get("end") or sr.get("occurrenceDateTime")
    if rec.due_date is not None:
        assert when == rec.due_date.isoformat()


def test_standalone_launch_with_a_chosen_patient(page: Any, stack: Stack, patient_id: str) -> None:
    page.goto(f"{APP_URL}/app/")
    start = page.get_by_role("link", name="Sign in with the EHR and choose a patient").get_attribute("href")
    seen: dict[str, str] = {}

    def choose_patient(url: str) -> str:
        # the test plays the user picking the patient at the AS (this AS's picker is login_hint)
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        seen.update(q)
        return with_query(url, login_hint=f"Patient/{patient_id}")

    callback = walk_to_callback(page, urljoin(APP_URL, start), choose_patient)
    assert "launch" not in seen and "launch/patient" in seen["scope"].split() and seen["aud"] == stack.fhir_base_url
    assert seen["code_challenge_method"] == "S256" and len(seen["state"]) >= 43
    page.goto(callback)
    page.locator('h1:text("Lung cancer risk overview")').wait_for()
    assert page.locator('[data-testid="patient-banner"]').count() == 1
    screenshot(page, "07-standalone-launch-overview")


def test_logout(page: Any, stack: Stack, patient_id: str, app: AppProcess) -> None:
    page.goto(launch_url(stack, patient_id))
    page.locator("h1").first.wait_for()
    cookie = next(c["value"] for c in page.context.cookies(APP_URL) if c["name"] == "lungrisk_app")
    with app_db(app).session() as s:
        assert s.get(SmartSessionRow, hash_cookie(cookie)) is not None
    page.get_by_role("button", name="Sign out").click()
    page.locator("text=You are signed out").wait_for()
    with app_db(app).session() as s:
        assert s.get(SmartSessionRow, hash_cookie(cookie)) is None  # the tokens are gone from the server
    page.goto(f"{APP_URL}/app/timeline")
    assert page.locator('[data-error-code="no-session"]').count() == 1


# --- negative cases: each shows a clear error page -------------------------------------------------------
def _error(page: Any, code: str, shot: str) -> str:
    err = page.locator(f'[data-error-code="{code}"]')
    err.wait_for()
    screenshot(page, shot)
    text: str = err.inner_text()
    assert "What to do" in text
    return text


def test_state_mismatch(page: Any, stack: Stack, patient_id: str) -> None:
    callback = walk_to_callback(page, launch_url(stack, patient_id))
    state = parse_qs(urlsplit(callback).query)["state"][0]
    page.goto(with_query(callback, state=state[::-1]))
    text = _error(page, "state-mismatch", "90-error-state-mismatch")
    assert "does not belong to this browser session" in text


def test_callback_in_another_browser_is_refused(browser: Any, page: Any, stack: Stack, patient_id: str) -> None:
    callback = walk_to_callback(page, launch_url(stack, patient_id))
    other = browser.new_context().new_page()  # right state, but not the browser session that started the launch
    other.goto(callback)
    _error(other, "state-mismatch", "90b-error-callback-in-another-browser")
    other.context.close()


def test_missing_pkce_verifier(page: Any, stack: Stack, patient_id: str, app: AppProcess) -> None:
    callback = walk_to_callback(page, launch_url(stack, patient_id))
    with app_db(app).session() as s:
        s.execute(update(SmartSessionRow).where(SmartSessionRow.phase == SessionPhase.AUTHORIZING.value)
                  .values(code_verifier=None))
    page.goto(callback)
    text = _error(page, "missing-pkce-verifier", "91-error-missing-pkce-verifier")
    assert "PKCE" in text


def test_wrong_pkce_verifier_is_refused_by_the_authorization_server(page: Any, stack: Stack, patient_id: str,
                                                                    app: AppProcess) -> None:
    callback = walk_to_callback(page, launch_url(stack, patient_id))
    with app_db(app).session() as s:
        s.execute(update(SmartSessionRow).where(SmartSessionRow.phase == SessionPhase.AUTHORIZING.value)
                  .values(code_verifier=new_pkce().code_verifier))
    page.goto(callback)
    text = _error(page, "token-exchange-failed", "92-error-wrong-pkce-verifier")
    assert "invalid_grant" in text


def test_scope_denied_read_only_launch(page: Any, stack: Stack, patient_id: str) -> None:
    page.goto(launch_url(stack, patient_id, read_only=True))
    page.locator("h1").first.wait_for()
    page.get_by_role("link", name="Actions").click()
    assert page.locator('[data-testid="ra-scope-missing"]').is_visible()
    assert page.get_by_role("button", name="Save RiskAssessment").count() == 0
    screenshot(page, "93-actions-read-only-grant")
    # a hand-made POST is refused too (CSRF token valid, scope missing)
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    page.evaluate("""([url, token]) => { const f = document.createElement('form'); f.method = 'post';
        f.action = url; const i = document.createElement('input'); i.name = 'csrf_token'; i.value = token;
        f.appendChild(i); document.body.appendChild(f); f.submit(); }""",
                  [f"{APP_URL}/app/actions/risk-assessment", token])
    text = _error(page, "scope-denied", "94-error-scope-denied")
    assert "RiskAssessment" in text


def test_access_denied_by_the_authorization_server(page: Any) -> None:
    # a standalone launch in which no patient is chosen: the AS answers error=access_denied
    page.goto(f"{APP_URL}/app/launch")
    text = _error(page, "authorization-denied", "95-error-access-denied")
    assert "access_denied" in text
