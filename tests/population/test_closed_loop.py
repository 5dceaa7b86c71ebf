"""The closed loop over successive runs: what appears in the EHR (ServiceRequest, Appointment, ImagingStudy, the SR
result) moves each item recommended → ordered → scheduled → completed → reconciled; coordinator actions are
recorded with who and when and survive later runs. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from risk.config import load_settings
from risk.domain import NoduleObservation
from risk.errors import InvalidInput, NotFound
from risk.population.actions import item_events, record_action
from risk.population.closed_loop import evidence
from risk.population.runs import RunOptions, run_population
from risk.population.worklist import Queue, WorklistFilter, page, queue_counts
from risk.store.audit import recent_audit
from risk.store.db import Database
from risk.store.population import PopulationRun, WorklistEvent, WorklistItem
from tests.population.builders import Export

SITES = ("site-a",)


class Reported:
    """Studies whose SR has been read (no nodules in it): a dict-backed ObservationSource."""

    def __init__(self) -> None:
        self.uids: set[str] = set()

    def observations(self, study_uids: pl.Series) -> dict[str, list[NoduleObservation]]:
        return {u: [] for u in study_uids if u in self.uids}


def scenario() -> Export:
    e = Export()
    for pid, birth in (("A", date(1960, 3, 1)), ("E", date(1961, 3, 1))):  # eligible, never screened
        e.patient(pid, birth=birth)
        e.smoking(pid, "current", on=date(2026, 1, 5), pack_years=35, cpd=20, years=35)
    e.patient("B", birth=date(1958, 5, 5))  # eligible, annual screen due (last CT 2025-05-01)
    e.smoking("B", "former", on=date(2025, 4, 1), pack_years=40, cpd=20, years=40, quit_on=date(2020, 1, 1))
    e.order("B", "B-o1", authored=date(2025, 4, 15), status="completed", occurrence=date(2025, 5, 1))
    e.study("B", "B-ct1", date(2025, 5, 1), order_id="B-o1")
    e.patient("C", birth=date(1943, 1, 1))  # 83: no program; heavy smoker: high risk without a plan
    e.smoking("C", "current", on=date(2026, 1, 5), pack_years=60, cpd=30, years=40)
    e.patient("D", birth=date(1962, 1, 1))  # screened in March: nothing due yet
    e.smoking("D", "current", on=date(2026, 1, 5), pack_years=30, cpd=20, years=30)
    e.order("D", "D-o1", authored=date(2026, 2, 20), status="completed", occurrence=date(2026, 3, 1))
    e.study("D", "D-ct1", date(2026, 3, 1), order_id="D-o1")
    e.patient("F", birth=date(1962, 1, 1), site="site-b")  # another site's patient (never visible to site-a)
    e.smoking("F", "current", on=date(2026, 1, 5), pack_years=30, cpd=40, years=15)
    return e


def items(db: Database) -> dict[str, WorklistItem]:
    with db.session() as s:
        return {f"{i.patient_id}:{i.kind}": i for i in s.scalars(select(WorklistItem))}


def run(db: Database, folder: Path, as_of: date, reported: Reported) -> dict[str, Any]:
    settings = load_settings(store={"url": db.url}, population={"work_dir": str(folder.parent / "work")})
    return run_population(settings, db, RunOptions(as_of=as_of, folder=folder, triggered_by="test"),
                          observations=reported).counts


def test_items_move_along_the_loop_over_runs(any_db: Database, tmp_path: Path) -> None:
    db, e, reported, folder = any_db, scenario(), Reported(), tmp_path / "export"
    # --- run 1 ---------------------------------------------------------------------------------------------------
    counts = run(db, e.write(folder), date(2026, 6, 30), reported)
    it = items(db)
    assert {k: v.loop_state for k, v in it.items()} == {
        "A:screening_baseline": "recommended", "E:screening_baseline": "recommended",
        "B:annual_screen": "recommended", "C:high_risk_no_plan": "recommended",
        "F:screening_baseline": "recommended"}
    assert it["B:annual_screen"].due_date == date(2026, 5, 1) and it["B:annual_screen"].basis_date == date(2025, 5, 1)
    assert counts["sites"]["site-a"]["queues"] == {"eligible_never_screened": 2, "annual_due": 1,
                                                   "nodule_follow_up": 0, "high_risk_no_plan": 1,
                                                   "awaiting_reconciliation": 0}
    with db.session() as s:  # a coordinator declines E (recorded with who and when, audited)
        record_action(s, it["E:screening_baseline"].id, "declined", actor="Practitioner/c1", sites=SITES,
                      today=date(2026, 7, 1), reason="does not want screening")
    # --- run 2: orders and an appointment -------------------------------------------------------------------------
    e.order("A", "A-o1", authored=date(2026, 7, 1))
    e.order("B", "B-o2", authored=date(2026, 7, 2))
    e.appointment("B-ap", "B-o2", date(2026, 7, 20))
    e.order("C", "C-o1", authored=date(2026, 7, 5), occurrence=date(2026, 7, 25))
    run(db, e.write(folder), date(2026, 7, 10), reported)
    it = items(db)
    assert it["A:screening_baseline"].loop_state == "ordered" and it["A:screening_baseline"].order_ref == "A-o1"
    assert it["B:annual_screen"].loop_state == "scheduled" and it["B:annual_screen"].scheduled_date == date(2026, 7, 20)
    assert it["C:high_risk_no_plan"].loop_state == "scheduled" and it["C:high_risk_no_plan"].active
    assert it["E:screening_baseline"].disposition == "declined", "a run never overwrites a coordinator's action"
    assert it["E:screening_baseline"].disposition_by == "Practitioner/c1"
    # --- run 3: the CTs are done; B's SR result is read, A's not yet -----------------------------------------------
    a_uid = e.study("A", "A-ct1", date(2026, 7, 20), order_id="A-o1")
    b_uid = e.study("B", "B-ct2", date(2026, 7, 20), order_id="B-o2")
    reported.uids.add(b_uid)
    run(db, e.write(folder), date(2026, 8, 1), reported)
    it = items(db)
    a = it["A:screening_baseline"]
    assert (a.loop_state, a.study_uid, a.completed_date, a.active) == ("completed", a_uid, date(2026, 7, 20), True)
    b = [i for k, i in it.items() if k.startswith("B:annual_screen")]
    assert len(b) == 1 and (b[0].loop_state, b[0].active, b[0].closed_reason) == ("reconciled", False, "reconciled")
    with db.session() as s:
        waiting = page(s, Queue.AWAITING_RECONCILIATION, WorklistFilter(sites=SITES), today=date(2026, 8, 1))
        assert [r["patient_id"] for r in waiting.rows] == ["A"]
        # the coordinator records A's result as reconciled
        record_action(s, a.id, "reconciled", actor="Practitioner/c1", sites=SITES, today=date(2026, 8, 2))
        assert queue_counts(s, SITES, today=date(2026, 8, 2))["awaiting_reconciliation"] == 0
        history = [(ev.event, ev.from_state, ev.to_state, ev.actor) for ev in item_events(s, a.id)]
    assert history == [("created", None, "recommended", "population-run"),
                       ("state", "recommended", "ordered", "population-run"),
                       ("state", "ordered", "completed", "population-run"),
                       ("reconciled", "completed", "reconciled", "Practitioner/c1")]
    with db.session() as s:
        audited = [(a.actor, a.action) for a in recent_audit(s, limit=50)]
        runs = list(s.scalars(select(PopulationRun).order_by(PopulationRun.started_at)))
        n_events = len(list(s.scalars(select(WorklistEvent))))
    assert ("Practitioner/c1", "worklist.declined") in audited and ("Practitioner/c1", "worklist.reconciled") in audited
    assert [r.status for r in runs] == ["complete"] * 3 and n_events >= 9
    # --- run 4, same inputs: nothing moves back ---------------------------------------------------------------------
    run(db, e.write(folder), date(2026, 8, 3), reported)
    again = items(db)
    assert again["A:screening_baseline"].loop_state == "reconciled" and not again["A:screening_baseline"].active


def test_actions_validate_and_respect_sites(sqlite_db: Database, tmp_path: Path) -> None:
    run(sqlite_db, scenario().write(tmp_path / "x"), date(2026, 6, 30), Reported())
    it = items(sqlite_db)
    with sqlite_db.session() as s:
        with pytest.raises(InvalidInput, match="reason"):
            record_action(s, it["A:screening_baseline"].id, "declined", actor="u", sites=SITES, today=date(2026, 7, 1))
        with pytest.raises(InvalidInput, match="until"):
            record_action(s, it["A:screening_baseline"].id, "deferred", actor="u", sites=SITES, today=date(2026, 7, 1),
                          until=date(2026, 7, 1))
        with pytest.raises(InvalidInput, match="only a completed"):
            record_action(s, it["A:screening_baseline"].id, "reconciled", actor="u", sites=SITES,
                          today=date(2026, 7, 1))
        with pytest.raises(InvalidInput, match="action"):
            record_action(s, it["A:screening_baseline"].id, "delete", actor="u", sites=SITES, today=date(2026, 7, 1))
        with pytest.raises(NotFound):
            record_action(s, it["F:screening_baseline"].id, "contacted", actor="u", sites=SITES,
                          today=date(2026, 7, 1))
    with sqlite_db.session() as s:  # deferred: hidden until the date, then back
        record_action(s, it["A:screening_baseline"].id, "deferred", actor="u", sites=SITES, today=date(2026, 7, 1),
                      until=date(2026, 8, 1))
        filt = WorklistFilter(sites=SITES)
        ids = lambda day: [r["patient_id"] for r in page(s, Queue.ELIGIBLE_NEVER_SCREENED, filt, today=day).rows]  # noqa: E731
        assert ids(date(2026, 7, 31)) == ["E"]
        assert sorted(ids(date(2026, 8, 1))) == ["A", "E"]


def test_evidence_rules() -> None:
    items_ = pl.DataFrame({"item_key": ["k1", "k2", "k3"], "patient_id": ["p", "p", "q"],
                           "basis_date": [date(2025, 1, 1), None, date(2026, 1, 1)]})
    orders = pl.DataFrame({"pid": ["p", "q"], "order_id": ["o-old", "o-q"], "status": ["active", "revoked"],
                           "authored": [date(2024, 12, 1), date(2026, 2, 1)], "occurrence": [None, None],
                           "chest_ct": [True, True], "sdm": [False, False], "code": ["71271", "71271"]})
    studies = pl.DataFrame({"pid": ["p"], "uid": ["1.2.3"], "started": [date(2024, 12, 20)], "is_ct": [True],
                            "has_sr": [True], "chest_desc": [True], "screening_desc": [True],
                            "order_id": ["o-old"]})
    appointments = pl.DataFrame(schema={"appointment_id": pl.String, "status": pl.String, "start": pl.Date,
                                        "order_id": pl.String})
    from risk.population.rules import chest_ct_filter

    ev = {r["item_key"]: r for r in evidence(items_, orders, appointments, studies, chest_ct_filter(),
                                             pl.Series([], dtype=pl.String)).iter_rows(named=True)}
    assert ev["k1"]["evidence_rank"] == 0, "an order or CT before the basis study does not count"
    assert ev["k2"]["evidence_rank"] == 3 and ev["k2"]["study_uid"] == "1.2.3", "first screen: any CT counts"
    assert ev["k3"]["evidence_rank"] == 0, "a revoked order is no order"
