"""Token lifetime end to end: the app runs as the authorization server's short-lived client (2 s access tokens).

* The access token is refreshed before it expires, server-side, and the pages keep working.
* When the refresh token is revoked at the authorization server and the access token has expired, the app shows
  a clear "session expired" page instead of data or a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from risk.store.db import Database
from smart_app.store import SessionStore, SmartSessionRow, hash_cookie
from tests.conftest import Stack
from tests.smart_app.e2e import APP_URL, AppProcess, chromium, launch_url, screenshot, smart_configuration

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module")
def app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    proc = AppProcess(stack, tmp_path_factory.mktemp("app-shortlived"), {
        "RISK_SMART__CLIENT_ID": stack.shortlived_client_id,
        "RISK_SMART__REFRESH_MARGIN_S": "1",
    })
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def page(app: AppProcess) -> Iterator[Any]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1024, "height": 768})
        context.set_default_timeout(120_000)
        context.set_default_navigation_timeout(180_000)
        yield context.new_page()
        context.close()


def _session(app: AppProcess, page: Any) -> Any:
    cookie = next(c["value"] for c in page.context.cookies(APP_URL) if c["name"] == "lungrisk_app")
    db = Database(f"sqlite:///{app.db_path}")
    try:
        with db.session() as s:
            assert s.get(SmartSessionRow, hash_cookie(cookie)) is not None
        return SessionStore(db, ttl_s=3600).get(cookie)
    finally:
        db.dispose()


def test_access_token_is_refreshed_before_it_expires(page: Any, stack: Stack, app: AppProcess,
                                                     patient_id: str) -> None:
    page.goto(launch_url(stack, patient_id))
    page.locator('h1:text("Lung cancer risk overview")').wait_for()
    first = _session(app, page)
    assert first.refresh_token, "the authorization server issued no refresh token"
    time.sleep(3)  # the 2 s access token has expired
    page.get_by_role("button", name="Reload data from the EHR").click()  # reads the EHR again
    page.locator('h1:text("Lung cancer risk overview")').wait_for()
    assert page.locator("[data-error-code]").count() == 0, app.log_tail()
    later = _session(app, page)
    assert later.access_token != first.access_token
    assert later.token_expires_at > first.token_expires_at


def test_expired_token_that_cannot_be_refreshed_shows_an_error_page(page: Any, stack: Stack, app: AppProcess,
                                                                    patient_id: str) -> None:
    page.goto(launch_url(stack, patient_id))
    page.locator('h1:text("Lung cancer risk overview")').wait_for()
    sess = _session(app, page)
    revocation = smart_configuration(stack)["revocation_endpoint"]
    r = httpx.post(revocation, data={"token": sess.refresh_token, "token_type_hint": "refresh_token",
                                     "client_id": stack.shortlived_client_id}, timeout=10)
    assert r.status_code == 200, r.text
    time.sleep(3)
    page.goto(f"{APP_URL}/app/timeline")
    err = page.locator('[data-error-code="token-expired"]')
    err.wait_for()
    screenshot(page, "97-error-token-expired")
    text = err.inner_text()
    assert "expired" in text and "What to do" in text
    assert page.locator('[data-testid="nodule"]').count() == 0  # no data shown on an expired session
