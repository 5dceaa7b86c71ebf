"""The demo in headless Chromium against the local stack: the landing page, the simulated EHR's patient list, a
chart that runs patient-view and shows the cards, then the SMART app opened from a card's link, in the chart's
iframe, through the real authorization server. Screenshots go to test-artifacts/demo/.

The service is a real uvicorn process on 127.0.0.1:18700 (the redirect URI the authorization server knows) in the
demo environment, with the demo EHR's key registered as a CDS issuer (no open mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, read_stack_env
from tests.smart_app.e2e import APP_URL, ROOT, AppProcess, chromium

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts" / "demo"
PATIENT = "lcb-0000001"


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A PNG under test-artifacts/demo/ (full-page captures resize the viewport, which blanks an iframe: the chart
    with the app is taken at the viewport's size)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def app(stack: Stack, stack_cohort: Path, demo_keys: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[AppProcess]:
    env = {**read_stack_env(demo_keys), "RISK_ENVIRONMENT": "demo", "RISK_SMART__FRAME_ANCESTORS": '["\'self\'"]',
           "RISK_DEMO__CDS_TIMEOUT_S": "120", "RISK_CDS__REQUEST_BUDGET_S": "30"}
    proc = AppProcess(stack, tmp_path_factory.mktemp("demo-app"), extra_env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def page(app: AppProcess) -> Iterator[Any]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(120_000)
        context.set_default_navigation_timeout(180_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.csp_errors = errors
        try:
            yield pg
        finally:
            context.close()


def test_demo_end_to_end(page: Any, app: AppProcess) -> None:
    page.goto(f"{APP_URL}/")
    assert page.locator('[data-testid="demo-banner"]').inner_text().startswith("Demo EHR simulator")
    assert "Synthetic data" in page.locator('[data-testid="synthetic-notice"]').inner_text()
    shot(page, "01-landing")

    page.get_by_role("link", name="Simulated EHR").click()
    page.get_by_label("Name starts with").fill(PATIENT.upper())
    page.get_by_role("button", name="Search").click()
    row = page.locator(f'tr[data-patient="{PATIENT}"]')
    row.wait_for()
    shot(page, "02-patient-list")

    row.get_by_role("link", name="Run CDS Hooks patient-view").click()
    page.locator('[data-testid="exchange"]').wait_for()
    status = page.locator('[data-testid="status"]').inner_text()
    assert status == "HTTP 200", page.content()[-3000:] + app.log_tail()
    cards = page.locator('[data-testid="card"]')
    assert cards.count() >= 1
    assert page.locator('[data-testid="patient-banner"]').inner_text().startswith("Synthetic LCB-0000001")
    shot(page, "03-chart-cds-cards")

    raw = page.locator('[data-testid="raw-response"]')
    assert not raw.locator("pre").is_visible()
    raw.locator("summary").click()
    assert raw.locator("pre").is_visible() and '"cards"' in raw.locator("pre").inner_text()

    cards.first.locator('[data-testid="smart-link"]').click()
    frame = page.frame_locator('[data-testid="smart-frame"]')
    frame.locator("h1").first.wait_for()
    if frame.locator("h1").first.inner_text() != "Lung cancer risk overview":  # a card may open another view
        frame.get_by_role("link", name="Overview").click()
    frame.locator('h1:text("Lung cancer risk overview")').wait_for()
    assert page.locator('[data-testid="patient-banner"]').inner_text().startswith("Synthetic LCB-0000001")
    assert frame.locator('[data-testid="synthetic-banner"]').is_visible()
    page.wait_for_load_state("networkidle")
    shot(page, "04-chart-smart-app-overview", full_page=False)
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors
