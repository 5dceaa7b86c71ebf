"""The coordinator worklist: queues over the stored items, a documented priority, filters, pages and CSV.

Queues (every queue shows only open items of the viewer's sites: not declined, not deferred past today):

===========================  ===========================================================================
eligible_never_screened      first screen recommended (eligible, no chest CT on record), not yet done
annual_due                   annual screening LDCT whose order window has opened (due or overdue), not done
nodule_follow_up             a nodule's follow-up or work-up whose window has opened, not done
high_risk_no_plan            high model risk, nothing recommended, no open order, no recent chest CT
awaiting_reconciliation      the CT was done (ImagingStudy seen) but its result is not in yet
===========================  ===========================================================================

**Priority** = risk × days overdue, where *risk* is the item's risk (fusion model when loaded, else PLCOm2012's
six-year risk; for a nodule item the higher of that and the nodule's Brock probability; unknown risk counts as
:data:`UNKNOWN_RISK`, the 1.51 % screening threshold, so such patients are neither buried nor promoted) and
*days overdue* = today − due date (0 when not yet due). Sorted by priority (highest first), then due date
(earliest first), then risk, then item id: a stable order for paging.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Integer, Select, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from risk.assess.policy import DEFAULT_POLICY
from risk.errors import InvalidInput
from risk.population.closed_loop import RANKS, Disposition
from risk.store.population import PopulationPatient, WorklistItem

UNKNOWN_RISK: Final = DEFAULT_POLICY.high_risk_6yr
MAX_PAGE_SIZE: Final = 500


class Queue(StrEnum):
    ELIGIBLE_NEVER_SCREENED = "eligible_never_screened"
    ANNUAL_DUE = "annual_due"
    NODULE_FOLLOW_UP = "nodule_follow_up"
    HIGH_RISK_NO_PLAN = "high_risk_no_plan"
    AWAITING_RECONCILIATION = "awaiting_reconciliation"

    @property
    def label(self) -> str:
        return QUEUE_TITLES[self]


QUEUE_TITLES: Final = {
    Queue.ELIGIBLE_NEVER_SCREENED: "Eligible, never screened",
    Queue.ANNUAL_DUE: "Annual screen due or overdue",
    Queue.NODULE_FOLLOW_UP: "Nodule follow-up due or overdue",
    Queue.HIGH_RISK_NO_PLAN: "High model risk, no plan",
    Queue.AWAITING_RECONCILIATION: "Results awaiting reconciliation",
}
PROGRAMS: Final = ("uspstf_2021", "cms_2022", "acs_2023")


@dataclass(frozen=True, slots=True)
class WorklistFilter:
    """``sites``: what the viewer may see (access scope, required). The rest narrows within it."""

    sites: tuple[str, ...]
    site: str | None = None
    category: str | None = None
    program: str | None = None
    due_from: date | None = None
    due_to: date | None = None

    def __post_init__(self) -> None:
        if not self.sites:
            raise InvalidInput("sites", "the viewer may see no site")
        if self.site is not None and self.site not in self.sites:
            raise InvalidInput("site", f"{self.site!r} is not one of your program's sites")
        if self.program is not None and self.program not in PROGRAMS:
            raise InvalidInput("program", f"must be one of {', '.join(PROGRAMS)}, got {self.program!r}")
        if self.due_from and self.due_to and self.due_from > self.due_to:
            raise InvalidInput("due_to", "must not be before due_from")
        if self.category is not None and (not self.category.strip() or len(self.category) > 64):
            raise InvalidInput("category", "must be 1-64 characters")

    def describe(self) -> dict[str, str]:
        out = {"site": self.site, "category": self.category, "program": self.program,
               "due_from": self.due_from.isoformat() if self.due_from else None,
               "due_to": self.due_to.isoformat() if self.due_to else None}
        return {k: v for k, v in out.items() if v}


def days_overdue_expr(session: Session, today: date) -> ColumnElement[Any]:
    """today − due date in days, as SQL for the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return literal(today) - WorklistItem.due_date
    return cast(func.julianday(literal(today.isoformat())) - func.julianday(WorklistItem.due_date), Integer)


def priority_expr(session: Session, today: date) -> ColumnElement[Any]:
    days = days_overdue_expr(session, today)
    positive = case((days > 0, days), else_=0)
    return func.coalesce(WorklistItem.risk, UNKNOWN_RISK) * positive


def queue_condition(queue: Queue, today: date) -> ColumnElement[bool]:
    completed = RANKS["completed"]
    if queue is Queue.AWAITING_RECONCILIATION:
        return and_(WorklistItem.active.is_(True), WorklistItem.loop_state == "completed")
    base = and_(WorklistItem.active.is_(True), WorklistItem.loop_rank < completed)
    if queue is Queue.ELIGIBLE_NEVER_SCREENED:
        return and_(base, WorklistItem.kind == "screening_baseline")
    if queue is Queue.ANNUAL_DUE:
        return and_(base, WorklistItem.kind == "annual_screen", WorklistItem.window_start <= today)
    if queue is Queue.NODULE_FOLLOW_UP:
        return and_(base, WorklistItem.kind == "nodule_follow_up",
                    or_(WorklistItem.window_start.is_(None), WorklistItem.window_start <= today))
    return and_(WorklistItem.active.is_(True), WorklistItem.kind == "high_risk_no_plan",
                WorklistItem.loop_rank == RANKS["recommended"])


def visible_condition(filt: WorklistFilter, today: date) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = [
        WorklistItem.site.in_(filt.sites),
        or_(WorklistItem.disposition.is_(None), WorklistItem.disposition != Disposition.DECLINED.value),
        or_(WorklistItem.disposition.is_(None), WorklistItem.disposition != Disposition.DEFERRED.value,
            WorklistItem.deferred_until.is_(None), WorklistItem.deferred_until <= today),
    ]
    if filt.site:
        conds.append(WorklistItem.site == filt.site)
    if filt.category:
        conds.append(or_(WorklistItem.category == filt.category, WorklistItem.category.like(f"%{filt.category}%")))
    if filt.program:
        conds.append(WorklistItem.programs.like(f"%{filt.program}%"))
    if filt.due_from:
        conds.append(WorklistItem.due_date >= filt.due_from)
    if filt.due_to:
        conds.append(WorklistItem.due_date <= filt.due_to)
    return and_(*conds)


COLUMNS: Final = ("item_id", "patient_id", "name", "mrn", "phone", "site", "age_years", "kind", "text",
                  "guideline", "category", "programs", "window_start", "due_date", "overdue_after", "days_overdue",
                  "due_status", "risk", "risk_source", "priority", "loop_state", "order_ref", "scheduled_date",
                  "study_uid", "completed_date", "disposition", "disposition_reason", "deferred_until")


def _select(session: Session, queue: Queue, filt: WorklistFilter, today: date, *, limit: int | None = None,
            offset: int = 0) -> Select[Any]:
    """The queue's rows in priority order (``limit``/``offset``: one page of them).

    The items are ranked (and a page cut) before the patients' columns are joined: joining first made PostgreSQL
    look up the patient of every item in the queue for a page of 50 (1.2 s for a queue of 184k)."""
    prio = priority_expr(session, today)
    ranked: Any = (
        select(WorklistItem.id, WorklistItem.patient_id, WorklistItem.site, WorklistItem.kind, WorklistItem.text,
               WorklistItem.guideline, WorklistItem.category, WorklistItem.programs, WorklistItem.window_start,
               WorklistItem.due_date, WorklistItem.overdue_after, days_overdue_expr(session, today).label("days"),
               WorklistItem.risk, prio.label("priority"), WorklistItem.loop_state, WorklistItem.order_ref,
               WorklistItem.scheduled_date, WorklistItem.study_uid, WorklistItem.completed_date,
               WorklistItem.disposition, WorklistItem.disposition_reason, WorklistItem.deferred_until)
        .where(queue_condition(queue, today), visible_condition(filt, today))
    )
    if limit is not None:
        ranked = ranked.order_by(*_priority_order(ranked.selected_columns)).limit(limit).offset(offset)
    i = ranked.subquery("ranked")
    stmt: Any = (
        select(i.c.id, i.c.patient_id, PopulationPatient.name, PopulationPatient.mrn, PopulationPatient.phone,
               i.c.site, PopulationPatient.age_years, i.c.kind, i.c.text, i.c.guideline, i.c.category, i.c.programs,
               i.c.window_start, i.c.due_date, i.c.overdue_after, i.c.days, i.c.risk, PopulationPatient.risk_source,
               i.c.priority, i.c.loop_state, i.c.order_ref, i.c.scheduled_date, i.c.study_uid, i.c.completed_date,
               i.c.disposition, i.c.disposition_reason, i.c.deferred_until)
        .join(PopulationPatient, PopulationPatient.patient_id == i.c.patient_id, isouter=True)
        .order_by(*_priority_order(i.c))
    )
    return stmt


def _priority_order(c: Any) -> list[ColumnElement[Any]]:
    """The documented order: priority, then the earliest due date, the highest risk, the oldest item."""
    return [c.priority.desc(), c.due_date.asc().nulls_last(), func.coalesce(c.risk, 0).desc(), c.id.asc()]


def _row(r: Sequence[Any], today: date) -> dict[str, Any]:
    (item_id, pid, name, mrn, phone, site, age, kind, text, guideline, category, programs, window_start, due,
     overdue_after, days, risk, risk_source, prio, state, order_ref, scheduled, study_uid, completed, disposition,
     reason, deferred) = r
    if due is None:
        status = "no date"
    elif window_start is not None and today < window_start:
        status = "not yet due"
    elif overdue_after is not None and today > overdue_after:
        status = "overdue"
    else:
        status = "due"
    return {"item_id": item_id, "patient_id": pid, "name": name, "mrn": mrn, "phone": phone, "site": site,
            "age_years": age, "kind": kind, "text": text, "guideline": guideline, "category": category,
            "programs": programs, "window_start": window_start, "due_date": due, "overdue_after": overdue_after,
            "days_overdue": max(int(days), 0) if days is not None else None, "due_status": status,
            "risk": risk, "risk_source": risk_source, "priority": float(prio or 0.0), "loop_state": state,
            "order_ref": order_ref, "scheduled_date": scheduled, "study_uid": study_uid, "completed_date": completed,
            "disposition": disposition, "disposition_reason": reason, "deferred_until": deferred}


@dataclass(frozen=True, slots=True)
class WorklistPage:
    queue: Queue
    rows: list[dict[str, Any]]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def page(session: Session, queue: Queue, filt: WorklistFilter, *, today: date, page_number: int = 1,
         page_size: int = 50) -> WorklistPage:
    if page_number < 1:
        raise InvalidInput("page", f"must be ≥ 1, got {page_number}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput("page_size", f"must be 1-{MAX_PAGE_SIZE}, got {page_size}")
    stmt = _select(session, queue, filt, today, limit=page_size, offset=(page_number - 1) * page_size)
    total = session.scalar(select(func.count(WorklistItem.id)).where(queue_condition(queue, today),
                                                                     visible_condition(filt, today))) or 0
    rows = session.execute(stmt).all()
    return WorklistPage(queue=queue, rows=[_row(r, today) for r in rows], total=int(total), page=page_number,
                        page_size=page_size)


def rows(session: Session, queue: Queue, filt: WorklistFilter, *, today: date, batch: int = 5000
         ) -> Iterator[dict[str, Any]]:
    """Every row of the queue in priority order (streamed)."""
    result = session.execute(_select(session, queue, filt, today).execution_options(yield_per=batch))
    for r in result:
        yield _row(r, today)


def csv_lines(session: Session, queue: Queue, filt: WorklistFilter, *, today: date) -> Iterator[str]:
    """The queue as CSV text (header first), streamed in chunks."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows(session, queue, filt, today=today), start=1):
        writer.writerow(["" if row[c] is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                         for c in COLUMNS])
        if n % 1000 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def queue_counts(session: Session, sites: Sequence[str], *, today: date) -> dict[str, int]:
    """Items per queue (one pass over the sites' items)."""
    filt = WorklistFilter(sites=tuple(sites))
    counts = session.execute(select(*(func.count(WorklistItem.id).filter(queue_condition(queue, today))
                                      for queue in Queue)).where(visible_condition(filt, today))).one()
    return {queue.value: int(n or 0) for queue, n in zip(Queue, counts, strict=True)}
