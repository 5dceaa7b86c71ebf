"""Issued cards are written off the request path: recording never waits for the database."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from risk.cds.ledger import CardLedger, audit_row
from risk.config import StoreSettings
from risk.store import open_database
from risk.store.cds import CdsCard


def _row() -> dict[str, object]:
    return {"uuid": str(uuid.uuid4()), "service_id": "lung-risk", "hook": "patient-view", "hook_instance": "h",
            "card_type": "screening-due", "indicator": "info", "patient": "Patient/p1", "assessment_id": "a",
            "issued_at": datetime.now(UTC), "suggestions": None}


def test_recording_does_not_wait_for_a_locked_database(tmp_path: Path) -> None:
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/l.db"))
    ledger = CardLedger(lambda: db, flush_s=0.01)
    blocker = sqlite3.connect(tmp_path / "l.db", timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # every writer now waits (busy_timeout) until it ends
    try:
        started = time.perf_counter()
        for _ in range(200):
            ledger.record([_row()], audit_row(actor="a", action="cds.patient-view", entity="Patient/p1",
                                              outcome="success", detail={"n": 1}))
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"recording 200 cards took {elapsed:.3f}s: it waited for the database"
        assert not ledger.flush(timeout_s=0.3)  # the writer is stuck behind the lock...
    finally:
        blocker.rollback()
        blocker.close()
    assert ledger.flush(timeout_s=20)  # ...and catches up once it is released
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(CdsCard)) == 200
    assert ledger.written_audits == 200 and ledger.dropped == 0
    ledger.close()
    db.dispose()


def test_batches_are_bounded_and_close_flushes(tmp_path: Path) -> None:
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/m.db"))
    ledger = CardLedger(lambda: db, flush_s=0.05)
    ledger.record([_row() for _ in range(1200)])
    ledger.close()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(CdsCard)) == 1200
    db.dispose()


def test_steady_traffic_is_written_in_one_batch_per_interval(tmp_path: Path) -> None:
    """Rows arriving while a batch is written wait for the next interval: under steady traffic the writer must not
    fall into one transaction per request (it did: draining "until empty" never ran out)."""
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/s.db"))
    ledger = CardLedger(lambda: db, flush_s=0.1)
    writes: list[int] = []
    write = ledger._write

    def counting_write(cards: list[dict[str, object]], audits: list[dict[str, object]]) -> None:
        writes.append(len(cards))
        time.sleep(0.005)  # a busy database: rows keep arriving while a batch is written
        write(cards, audits)

    ledger._write = counting_write  # type: ignore[method-assign]
    started = time.perf_counter()
    recorded = 0
    while time.perf_counter() - started < 0.8:  # a card every millisecond or so, for 0.8 s
        ledger.record([_row()])
        recorded += 1
        time.sleep(0.001)
    ledger.close()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(CdsCard)) == recorded
    assert len(writes) <= 15, f"{len(writes)} transactions for {recorded} cards in 0.8 s (flush every 0.1 s)"
    db.dispose()
