"""The coordinator pages through the real application (create_app): session required, site scoping, filters and
paging, CSV export, actions with CSRF, 422 naming the field, and an audit record for every view, export and action.
(Sign-in through the real SMART authorization server is covered by test_browser.py.)"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from risk.app import create_app
from risk.config import Settings, load_settings
from risk.population.access import hash_cookie
from risk.population.nodules import TableObservations
from risk.population.runs import RunOptions, run_population
from risk.population.web import COOKIE_PLAIN
from risk.store.audit import AuditEvent
from risk.store.population import CoordinatorSession, WorklistItem

PROGRAMS = [{"name": "north", "sites": ["site-a"], "members": ["Practitioner/c1"]},
            {"name": "south", "sites": ["site-b"], "members": ["Practitioner/c2"]}]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, cohort: Path, cohort_as_of: date) -> Settings:
    url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'web.db'}"
    s = load_settings(store={"url": url}, smart={"secure_cookies": False},
                      population={"programs": PROGRAMS, "page_size": 10})
    from risk.store.db import Database

    db = Database(url)
    db.upgrade()
    # today's date drives due statuses on the pages: score as of today so the cohort's items are due
    run_population(s, db, RunOptions(as_of=datetime.now(UTC).date(), folder=cohort / "fhir" / "ndjson"),
                   observations=TableObservations.from_cohort(cohort))
    db.dispose()
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1:18700") as c:
        c.app_state = app.state  # type: ignore[assignment]
        yield c


def sign_in(client: TestClient, user: str, program: str, sites: list[str]) -> str:
    """A coordinator session as the sign-in callback leaves it (the SMART exchange itself: test_browser.py)."""
    cookie = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    db = client.app_state.db  # type: ignore[attr-defined]
    with db.session() as s:
        s.add(CoordinatorSession(id_hash=hash_cookie(cookie), phase="active", created_at=now,
                                 expires_at=now + timedelta(hours=1), user=user, program=program, sites=sites,
                                 csrf_token="csrf-" + user[-2:]))
    client.cookies.set(COOKIE_PLAIN, cookie)
    return "csrf-" + user[-2:]


def audits(client: TestClient) -> list[tuple[str, str, str]]:
    with client.app_state.db.session() as s:  # type: ignore[attr-defined]
        return [(a.actor, a.action, a.entity) for a in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/worklist/", "/worklist/queue/annual_due", "/worklist/queue/annual_due.csv", "/worklist/item/1",
                 "/worklist/registry.csv?from=2026-01-01&to=2026-06-30", "/worklist/runs"):
        r = client.get(path)
        assert r.status_code == 401 and "Sign in" in r.text, path
    assert client.post("/worklist/item/1/action", data={"action": "contacted"}).status_code == 401


def test_dashboard_queue_paging_filters_csv_and_audit(client: TestClient) -> None:
    sign_in(client, "Practitioner/c1", "north", ["site-a"])
    home = client.get("/worklist/")
    assert home.status_code == 200 and 'data-testid="trend-queues"' in home.text and "<svg" in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'none'")
    n = int(re.search(r'data-testid="count-annual_due">(\d+)<', home.text).group(1))  # type: ignore[union-attr]
    assert n > 10
    first = client.get("/worklist/queue/annual_due")
    assert first.status_code == 200 and first.text.count('data-testid="row"') == 10
    second = client.get("/worklist/queue/annual_due?page=2")
    ids1 = re.findall(r'data-item="(\d+)"', first.text)
    ids2 = re.findall(r'data-item="(\d+)"', second.text)
    assert ids1 and ids2 and not set(ids1) & set(ids2)
    filtered = client.get("/worklist/queue/annual_due?program=cms_2022")
    assert filtered.status_code == 200 and f"{n} item(s)" not in filtered.text
    export = client.get("/worklist/queue/annual_due.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(export.text)))
    assert len(table) == n + 1 and [r[0] for r in table[1:11]] == ids1
    actions = [a[1] for a in audits(client) if a[0] == "Practitioner/c1"]
    assert actions.count("population.worklist_view") >= 3 and "population.worklist_export" in actions
    assert "population.dashboard_view" in actions


def test_bad_query_values_get_422_naming_the_field(client: TestClient) -> None:
    sign_in(client, "Practitioner/c1", "north", ["site-a"])
    for query, field in (("due_from=2026-13-01", "due_from"), ("program=nccn", "program"), ("page=two", "page"),
                         ("site=site-b", "site"), ("due_from=2026-02-01&due_to=2026-01-01", "due_to")):
        r = client.get(f"/worklist/queue/annual_due?{query}")
        assert r.status_code == 422 and f"{field}:" in r.text, query
    assert client.get("/worklist/queue/everything").status_code == 404
    r = client.get("/worklist/registry.csv?from=2026-01-01&to=yesterday")
    assert r.status_code == 422 and "to:" in r.text


def test_sites_scope_what_a_coordinator_sees(client: TestClient) -> None:
    sign_in(client, "Practitioner/c2", "south", ["site-b"])
    page = client.get("/worklist/queue/annual_due")
    assert page.status_code == 200 and 'data-testid="row"' not in page.text
    with client.app_state.db.session() as s:  # type: ignore[attr-defined]
        other = s.scalar(select(WorklistItem.id).where(WorklistItem.site == "site-a").limit(1))
    assert client.get(f"/worklist/item/{other}").status_code == 404
    assert client.post(f"/worklist/item/{other}/action", data={"action": "contacted", "csrf_token": "csrf-c2"},
                       headers={"origin": "http://127.0.0.1:18700"}).status_code == 404
    assert client.get("/worklist/queue/annual_due.csv").text.count("\n") == 1


def test_an_action_is_recorded_with_who_and_audited(client: TestClient) -> None:
    token = sign_in(client, "Practitioner/c1", "north", ["site-a"])
    item = re.search(r'data-item="(\d+)"', client.get("/worklist/queue/annual_due").text).group(1)  # type: ignore[union-attr]
    origin = {"origin": "http://127.0.0.1:18700"}
    assert client.post(f"/worklist/item/{item}/action", data={"action": "declined", "reason": "x"},
                       headers=origin).status_code == 422, "no CSRF token"
    assert client.post(f"/worklist/item/{item}/action", data={"action": "declined", "reason": "x",
                                                               "csrf_token": token},
                       headers={"origin": "https://evil.example"}).status_code == 422
    r = client.post(f"/worklist/item/{item}/action", data={"action": "declined", "reason": "", "csrf_token": token},
                    headers=origin)
    assert r.status_code == 422 and "reason:" in r.text
    r = client.post(f"/worklist/item/{item}/action", data={"action": "deferred", "until": "soon",
                                                           "csrf_token": token}, headers=origin)
    assert r.status_code == 422 and "until:" in r.text
    r = client.post(f"/worklist/item/{item}/action", data={"action": "declined", "reason": "moved away",
                                                           "csrf_token": token}, headers=origin,
                    follow_redirects=False)
    assert r.status_code == 303
    detail = client.get(f"/worklist/item/{item}")
    assert "moved away" in detail.text and "Practitioner/c1" in detail.text
    assert re.search(r"<td>Practitioner/c1</td><td>declined</td>", detail.text)
    assert 'data-testid="eligibility"' in detail.text and "USPSTF 2021" in detail.text
    assert item not in re.findall(r'data-item="(\d+)"', client.get("/worklist/queue/annual_due").text)
    assert ("Practitioner/c1", "worklist.declined", f"worklist_item/{item}") in audits(client)
    assert ("Practitioner/c1", "population.item_view", f"worklist_item/{item}") in audits(client)


def test_registry_download_is_audited(client: TestClient) -> None:
    sign_in(client, "Practitioner/c1", "north", ["site-a"])
    today = datetime.now(UTC).date()
    r = client.get(f"/worklist/registry.csv?from={today - timedelta(days=400)}&to={today}")
    assert r.status_code == 200 and r.text.startswith("facility,patient_id")
    assert any(a == ("Practitioner/c1", "population.registry_export", "registry") for a in audits(client))
