"""End to end on a private local stack: a synthetic cohort (FHIR + DICOM CT + vendor SRs) loaded into the FHIR
server and Orthanc, a Bulk $export with a SMART Backend Services token, the SRs parsed from the PACS, scoring, and
the queues checked against the cohort's ground truth; then the held-back studies (and a new order) are loaded and a
second run moves the right items along the loop. Then the coordinator pages in headless Chromium (Playwright):
sign-in through the real SMART authorization server, filters, paging, CSV export, an action recorded and audited.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from sqlalchemy import select

from risk.config import Settings, load_settings
from risk.population.runs import RunOptions, RunSummary, run_population
from risk.population.worklist import Queue, WorklistFilter, rows
from risk.store.audit import AuditEvent
from risk.store.db import Database
from risk.store.population import PopulationRun, WorklistEvent, WorklistItem
from tests.population.conftest import synth
from tests.population.stack import APP_URL, App, OwnStack, own_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SITES = ("site-a",)
ARTIFACTS = ROOT / "test-artifacts" / "population"


@dataclass
class World:
    stack: OwnStack
    cohort: Path
    as_of: date
    held: pl.DataFrame
    """The held-back latest studies (patient_id, study_instance_uid, imaging_study_id, service_request_id)."""
    ordered_patient: str | None
    db: Database
    settings: Settings
    runs: list[RunSummary]
    workdir: Path
    part2: Path


def _lines(folder: Path) -> dict[str, list[bytes]]:
    return {p.name: p.read_bytes().splitlines() for p in sorted(folder.glob("*.ndjson"))}


def _write_part(dst: Path, manifest: bytes, ndjson: dict[str, list[bytes]], dicom_dirs: list[Path]) -> Path:
    (dst / "fhir" / "ndjson").mkdir(parents=True)
    (dst / "manifest.json").write_bytes(manifest)
    for name, lines in ndjson.items():
        if lines:
            (dst / "fhir" / "ndjson" / name).write_bytes(b"\n".join(lines) + b"\n")
    for d in dicom_dirs:
        shutil.copytree(d, dst / "dicom" / d.name)
    return dst


def _load(stack: OwnStack, folder: Path) -> None:
    env = {**os.environ, **stack.risk_env}
    run = subprocess.run([sys.executable, "-m", "risk", "load", str(folder), "--fhir-input", "ndjson", "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def _settings(stack: OwnStack, db_url: str, work: Path) -> Settings:
    e = stack.env
    return load_settings(
        store={"url": db_url}, fhir={"base_url": e["RISK_FHIR__BASE_URL"], "timeout_s": 30},
        dicomweb={"url": e["RISK_DICOMWEB__URL"], "username": e["RISK_DICOMWEB__USERNAME"],
                  "password": e["RISK_DICOMWEB__PASSWORD"], "timeout_s": 60},
        smart_backend={"token_url": e["RISK_SMART_BACKEND__TOKEN_URL"], "client_id": e["RISK_SMART_BACKEND__CLIENT_ID"],
                       "private_jwks_file": e["RISK_SMART_BACKEND__PRIVATE_JWKS_FILE"]},
        population={"work_dir": str(work), "export_poll_max_s": 2.0, "sync_pacs": True,
                    "programs": [{"name": "north", "sites": ["site-a"], "members": ["Practitioner/coordinator-1"]}]})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("e2e")
    cohort = synth(base / "cohort", 24, 2024)
    manifest = (cohort / "manifest.json").read_bytes()
    as_of = date.fromisoformat(orjson.loads(manifest)["as_of"])
    studies = pl.read_parquet(cohort / "truth" / "studies.parquet").sort("patient_id", "study_date")
    latest = studies.group_by("patient_id", maintain_order=True).agg(pl.all().last(), n=pl.len(),
                                                                      previous=pl.col("study_date").sort().slice(-2, 1))
    # hold back the latest study of patients with 2+ studies whose previous one is 11+ months old on the as-of date
    held = (latest.filter((pl.col("n") >= 2) & (pl.col("kind") == "annual"))
            .with_columns(previous=pl.col("previous").list.first())
            .filter(pl.col("previous") <= as_of - timedelta(days=335)).head(4))
    assert held.height >= 2, "the cohort needs held-back annual studies"
    held_ids = set(held["imaging_study_id"]) | set(held["service_request_id"])
    part1: dict[str, list[bytes]] = {}
    part2: dict[str, list[bytes]] = {}
    for name, lines in _lines(cohort / "fhir" / "ndjson").items():
        for line in lines:
            rid = orjson.loads(line)["id"]
            (part2 if rid in held_ids else part1).setdefault(name, []).append(line)
    dicom = sorted((cohort / "dicom").iterdir())
    held_uids = set(held["study_instance_uid"])
    # a patient with an annual screen due who gets a new (active) chest-CT order before the second run
    candidates = latest.filter(~pl.col("patient_id").is_in(list(held["patient_id"])) & (pl.col("kind") != "baseline")
                               & (pl.col("study_date") <= as_of - timedelta(days=335)))
    ordered = candidates["patient_id"][0] if candidates.height else None
    if ordered is not None:
        order = {"resourceType": "ServiceRequest", "id": f"{ordered}-ldct-new", "status": "active",
                 "intent": "order", "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "71271"}]},
                 "subject": {"reference": f"Patient/{ordered}"}, "authoredOn": as_of.isoformat()}
        part2.setdefault("ServiceRequest.ndjson", []).append(orjson.dumps(order))
    p1 = _write_part(base / "part1", manifest, part1, [d for d in dicom if d.name not in held_uids])
    p2 = _write_part(base / "part2", manifest, part2, [d for d in dicom if d.name in held_uids])
    with own_stack(base / "stack") as stack:
        _load(stack, p1)
        db_path = base / "worklist.db"
        db = Database(f"sqlite:///{db_path}")
        db.upgrade()
        settings = _settings(stack, db.url, base / "work")
        first = run_population(settings, db, RunOptions(as_of=as_of, triggered_by="e2e"))
        yield World(stack=stack, cohort=cohort, as_of=as_of, held=held, ordered_patient=ordered, db=db,
                    settings=settings, runs=[first], workdir=base, part2=p2)
        db.dispose()


def _items(db: Database) -> list[WorklistItem]:
    with db.session() as s:
        return list(s.scalars(select(WorklistItem)))


def test_first_run_exports_scores_and_queues_match_the_truth(world: World) -> None:
    run = world.runs[0]
    assert run.status == "complete" and run.counts["patients"] == 24
    with world.db.session() as s:
        record = s.scalar(select(PopulationRun).where(PopulationRun.id == run.run_id))
    assert record is not None and record.inputs is not None
    assert record.inputs["request"].endswith("$export?_outputFormat=application/fhir%2Bndjson&_type=Patient,"
                                             "Observation,Condition,FamilyMemberHistory,ImagingStudy,ServiceRequest,"
                                             "Appointment")
    assert record.inputs["pacs_sync"]["patients_synced"] >= 10, "SRs were read from Orthanc into the cache"
    assert (world.workdir / "work" / run.run_id / "manifest.json").is_file()
    assert run.counts["with_nodules"] > 0, "nodule categories come from the parsed SRs"
    # the held-back patients' annual screens (their last CT on record is 11+ months old) are on the worklist
    # expected from the truth: a clean smoking record, and eligible under ACS 2023 on the as-of date (50-80 years,
    # an ever-smoker with 20+ pack-years; ACS has no limit on years since quitting), no lung cancer on record
    truth = pl.read_parquet(world.cohort / "truth" / "patients.parquet")
    age = (pl.lit(world.as_of) - pl.col("birth_date")).dt.total_days() / 365.25
    clean = set(truth.filter((pl.col("fhir_smoking_quantities") == "full") & ~pl.col("fhir_smoking_conflict")
                             & (pl.col("smoking_status_latest") != "never") & ~pl.col("lung_cancer_recorded")
                             & (pl.col("pack_years_t0") >= 20.5) & age.is_between(50.1, 79.9))["patient_id"])
    with world.db.session() as s:
        due = {r["patient_id"]: r for q in (Queue.ANNUAL_DUE, Queue.NODULE_FOLLOW_UP)
               for r in rows(s, q, WorklistFilter(sites=SITES), today=world.as_of)}
    expected = set(world.held["patient_id"]) & clean
    assert expected and expected <= set(due), (expected, set(due))
    # patients with an open follow-up order in the truth: their nodule item is scheduled (the order has a date)
    orders = pl.read_parquet(world.cohort / "truth" / "orders.parquet")
    items = {(i.patient_id, i.kind): i for i in _items(world.db)}
    for pid in orders["patient_id"]:
        nodule = items.get((pid, "nodule_follow_up"))
        if nodule is not None:
            assert nodule.loop_state in ("ordered", "scheduled"), (pid, nodule.loop_state)


def test_second_run_moves_the_right_items_along_the_loop(world: World) -> None:
    before = {i.item_key: i for i in _items(world.db)}
    _load(world.stack, world.part2)
    second = run_population(world.settings, world.db, RunOptions(as_of=world.as_of, triggered_by="e2e"))
    world.runs.append(second)
    after = {i.item_key: i for i in _items(world.db)}
    held = set(world.held["patient_id"])
    moved = {k: (before[k].loop_state, after[k].loop_state) for k in before
             if before[k].patient_id in held and before[k].loop_state != after[k].loop_state}
    assert moved, "the held-back studies move their items"
    for key, (old, new) in moved.items():
        item = after[key]
        assert new == "reconciled" and not item.active and item.study_uid in set(world.held["study_instance_uid"]), \
            (key, old, new)
        assert item.completed_date is not None and item.order_ref is not None
    untouched = [k for k in before if before[k].patient_id not in held and before[k].patient_id
                 != world.ordered_patient]
    assert all(after[k].loop_state == before[k].loop_state for k in untouched)
    if world.ordered_patient is not None:
        ordered = [i for i in after.values() if i.patient_id == world.ordered_patient and i.active]
        assert any(i.loop_state == "ordered" and i.order_ref == f"{world.ordered_patient}-ldct-new" for i in ordered)
    with world.db.session() as s:
        events = list(s.scalars(select(WorklistEvent).where(WorklistEvent.run_id == second.run_id)))
    assert {e.to_state for e in events} >= {"reconciled"}


# --- the pages in a browser ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(world: World) -> Iterator[App]:
    if len(world.runs) < 2:
        _load(world.stack, world.part2)
    # the pages judge due dates against today's date: score as of today, so today's worklist is on them
    world.runs.append(run_population(world.settings, world.db, RunOptions(as_of=date.today(), triggered_by="e2e")))
    e = world.stack.env
    env = {**world.stack.risk_env, "RISK_STORE__URL": world.db.url, "RISK_SMART__SECURE_COOKIES": "false",
           "RISK_POPULATION__PROGRAMS": '[{"name": "north", "sites": ["site-a"], '
                                        '"members": ["Practitioner/coordinator-1"]}]',
           "RISK_POPULATION__PAGE_SIZE": "5", "RISK_FHIR__BASE_URL": e["RISK_FHIR__BASE_URL"]}
    with App(env, world.workdir) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.browser
def test_coordinator_pages_in_a_browser(world: World, app: App, browser: Any) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{APP_URL}/worklist/")
    assert "Sign in" in page.title()
    page.click('[data-testid="sign-in"]')  # → the real SMART AS (standalone launch, practitioner coordinator-1)
    page.wait_for_url(f"{APP_URL}/worklist/")
    assert page.text_content('[data-testid="who"]') == "Practitioner/coordinator-1"
    _shot(page, "dashboard")
    count = int(page.text_content('[data-testid="count-annual_due"]') or "0")
    assert count > 5, "enough items to page through (the pages judge due dates against today)"
    page.click('[data-testid="nav-annual_due"]')
    first = page.locator('[data-testid="row"]').evaluate_all("rs => rs.map(r => r.dataset.item)")
    assert len(first) == 5
    page.click('[data-testid="next-page"]')
    second = page.locator('[data-testid="row"]').evaluate_all("rs => rs.map(r => r.dataset.item)")
    assert second and not set(first) & set(second)
    # filters: a due window that keeps only the earliest due items
    dues = sorted(date.fromisoformat(d) for d in page.locator('[data-testid="cell-due"]').all_text_contents())
    page.fill('[data-testid="filter-due-to"]', dues[0].isoformat())
    page.click('[data-testid="apply-filters"]')
    filtered_dues = [date.fromisoformat(d) for d in page.locator('[data-testid="cell-due"]').all_text_contents()]
    assert filtered_dues and max(filtered_dues) <= dues[0]
    assert "due_to=" in page.url
    _shot(page, "queue-filtered")
    # CSV export of the filtered queue
    with page.expect_download() as info:
        page.click('[data-testid="csv-link"]')
    text = Path(info.value.path()).read_text()
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][0] == "item_id" and len(table) - 1 == int(
        re.search(r"(\d+) item", page.text_content('[data-testid="total"]') or "").group(1))  # type: ignore[union-attr]
    # an action on the first item, recorded with who and when
    page.goto(f"{APP_URL}/worklist/queue/annual_due")
    page.click('[data-testid="item-link"] >> nth=0')
    item_id = int(page.url.rsplit("/", 1)[1])
    page.select_option('[data-testid="action"]', "contacted")
    page.fill('[data-testid="reason"]', "left a voicemail")
    page.click('[data-testid="record"]')
    page.wait_for_url(re.compile(r".*done=contacted"))
    assert "left a voicemail" in (page.text_content('[data-testid="disposition"]') or "")
    history = page.text_content('[data-testid="events"]') or ""
    assert "Practitioner/coordinator-1" in history and "contacted" in history
    _shot(page, "item")
    with world.db.session() as s:
        audit = [(a.actor, a.action, a.entity) for a in s.scalars(select(AuditEvent))]
    assert ("Practitioner/coordinator-1", "worklist.contacted", f"worklist_item/{item_id}") in audit
    assert ("Practitioner/coordinator-1", "population.worklist_export", "worklist/annual_due") in audit
    assert ("Practitioner/coordinator-1", "population.login", "worklist") in audit
    assert sum(1 for a in audit if a[1] == "population.worklist_view") >= 3
    context.close()


@pytest.mark.browser
def test_a_user_outside_every_program_is_refused(world: World, app: App, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{APP_URL}/worklist/login?login_hint=Practitioner/stranger-9")
    assert "No access" in page.title()
    assert "Practitioner/stranger-9 is not a coordinator" in (page.text_content('[data-testid="error"]') or "")
    page.goto(f"{APP_URL}/worklist/queue/annual_due")
    assert "Sign in" in page.title()
    context.close()
