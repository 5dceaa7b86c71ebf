"""Issued cards and audit events, written to the store off the request path.

A hook response never waits for the database: :meth:`CardLedger.record` appends the rows to in-process deques and
returns (no lock, no signal to another thread); one writer thread drains them every ``flush_s``, writing batches of
up to 500 rows in one transaction each (executemany inserts). :meth:`CardLedger.flush` waits until everything
recorded before it is written (the feedback endpoint calls it, so a card is always known by the time its feedback is
checked). A failed batch is logged with its row counts (never with PHI) and retried once; then it is dropped and
counted in ``dropped``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from risk.store.audit import insert_audit_rows
from risk.store.cds import insert_cards
from risk.store.db import Database

log = logging.getLogger(__name__)

MAX_BATCH = 500
T = TypeVar("T")


class CardLedger:
    def __init__(self, database: Callable[[], Database | None], *, flush_s: float = 0.05) -> None:
        self._database = database
        self._flush_s = flush_s
        # appends are atomic under the GIL and wake nobody: the request path never signals the writer thread
        self._cards: deque[dict[str, Any]] = deque()
        self._audits: deque[dict[str, Any]] = deque()
        self._waiters: deque[threading.Event] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self.written_cards = 0
        self.written_audits = 0
        self.dropped = 0

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="cds-card-ledger", daemon=True)
                self._thread.start()

    def record(self, cards: list[dict[str, Any]], audit: dict[str, Any] | None = None) -> None:
        """Queue card rows (``risk.store.cds.CdsCard`` columns) and one audit row; never blocks, never signals."""
        self._ensure_started()
        self._cards.extend(cards)
        if audit is not None:
            self._audits.append(audit)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything recorded before this call is written (or ``timeout_s`` passes)."""
        self._ensure_started()
        done = threading.Event()
        self._waiters.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    # --- writer thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_s)
            self._wake.clear()
            waiters = _drain(self._waiters)
            stopping = self._stopping
            # Only what is queued now (everything recorded before the waiters' flush calls included). Rows that
            # arrive while this round writes wait for the next one: under steady traffic the queues never run dry,
            # and draining "until empty" became one transaction per request or two (0.3 ms of CPU per request
            # at 500 requests/s instead of a batch every flush_s). At shutdown everything is written.
            cards_due = sys.maxsize if stopping else len(self._cards)
            audits_due = sys.maxsize if stopping else len(self._audits)
            while True:
                cards = _drain(self._cards, min(MAX_BATCH, cards_due))
                audits = _drain(self._audits, min(MAX_BATCH, audits_due))
                if not cards and not audits:
                    break
                cards_due -= len(cards)
                audits_due -= len(audits)
                self._write(cards, audits)
            for waiter in waiters:
                waiter.set()
            if stopping:
                return

    def _write(self, cards: list[dict[str, Any]], audits: list[dict[str, Any]]) -> None:
        db = self._database()
        if db is None:
            self.dropped += len(cards) + len(audits)
            log.error("no database: %d cards and %d audit events not stored", len(cards), len(audits))
            return
        for attempt in (1, 2):
            try:
                with db.session() as session:
                    insert_cards(session, cards)
                    insert_audit_rows(session, audits)
                self.written_cards += len(cards)
                self.written_audits += len(audits)
                return
            except Exception as exc:  # the writer must survive a database hiccup
                log.error("storing %d cards and %d audit events failed (attempt %d): %s", len(cards), len(audits),
                          attempt, type(exc).__name__)
                time.sleep(0.05)
        self.dropped += len(cards) + len(audits)


def _drain(items: deque[T], limit: int | None = None) -> list[T]:
    out: list[T] = []
    while items and (limit is None or len(out) < limit):
        try:
            out.append(items.popleft())
        except IndexError:
            break
    return out


def audit_row(*, actor: str, action: str, entity: str, outcome: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A row of ``audit_event`` (ids only; never tokens or PHI)."""
    return {"recorded_at": datetime.now(UTC), "actor": actor[:256], "action": action[:64], "entity": entity[:256],
            "outcome": outcome[:16], "detail": detail}
