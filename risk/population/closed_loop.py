"""The closed loop: each worklist item moves recommended → ordered → scheduled → completed → reconciled.

States, and the evidence that moves an item into each (read from the Bulk export on every run; an item never moves
back, and a coordinator may record what the EHR does not show):

============  ======================================================================================================
recommended   the run recommends it (a screening, annual or nodule follow-up CT, or attention for high risk)
ordered       a chest-CT ServiceRequest (CPT 71271/71250/71260/71270, HCPCS G0297; status active, draft, on-hold or
              completed; intent order/plan) for the patient, authored after the item's basis study (any, for a
              first screen)
scheduled     that order has an ``occurrenceDateTime`` (a date it is booked for), or an Appointment (proposed,
              pending, booked, arrived, checked-in) is ``basedOn`` it
completed     a chest-CT ImagingStudy for the patient started after the basis study (or the order's status is
              ``completed``); the earliest such study is the item's ``study_uid``
reconciled    the completed study's result is in: its SR has been parsed into the imaging-feature cache (so the
              run has re-graded the patient's nodules), or a coordinator recorded the result as reconciled
============  ======================================================================================================

Coordinator dispositions are separate from the state (a run never overwrites them): ``contacted`` (a note),
``declined`` with a reason (the item leaves the queues), ``deferred`` until a date (hidden until then).

An item the run no longer recommends stays open while the EHR shows it in progress (ordered, scheduled or completed
and awaiting its result) and is otherwise closed as ``superseded`` (e.g. a nodule plan replaced the annual screen,
the patient is no longer eligible); a reconciled item is closed as ``reconciled``. Declined and deferred items keep
their state; the queues hide them.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Final

import polars as pl

from risk.population.frames import BOOKED_APPOINTMENT_STATUSES, DONE_ORDER_STATUSES, OPEN_ORDER_STATUSES


class LoopState(StrEnum):
    RECOMMENDED = "recommended"
    ORDERED = "ordered"
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    RECONCILED = "reconciled"

    @property
    def rank(self) -> int:
        return LOOP_ORDER.index(self)


LOOP_ORDER: Final = (LoopState.RECOMMENDED, LoopState.ORDERED, LoopState.SCHEDULED, LoopState.COMPLETED,
                     LoopState.RECONCILED)
RANKS: Final = {s.value: i for i, s in enumerate(LOOP_ORDER)}


class Disposition(StrEnum):
    CONTACTED = "contacted"
    DECLINED = "declined"
    DEFERRED = "deferred"


class Action(StrEnum):
    """What a coordinator can record on an item."""

    CONTACTED = "contacted"
    DECLINED = "declined"
    DEFERRED = "deferred"
    RECONCILED = "reconciled"
    REOPEN = "reopen"


ITEM_EVIDENCE_SCHEMA: Final = {"item_key": pl.String, "order_ref": pl.String, "order_date": pl.Date,
                               "scheduled_date": pl.Date, "study_uid": pl.String, "completed_date": pl.Date,
                               "reconciled": pl.Boolean, "evidence_rank": pl.Int64}


def evidence(items: pl.DataFrame, orders: pl.DataFrame, appointments: pl.DataFrame, studies: pl.DataFrame,
             chest_study: pl.Expr, reported_uids: pl.Series) -> pl.DataFrame:
    """Per item (``item_key``, ``patient_id``, ``basis_date``): the order, schedule, study and result found.

    ``studies`` are the export's ImagingStudy rows (risk.population.frames), ``chest_study`` the filter that
    makes a study a chest CT (risk.population.rules.chest_ct_filter), ``reported_uids`` the studies whose SR
    is in the imaging-feature cache.
    """
    if items.is_empty():
        return pl.DataFrame(schema=ITEM_EVIDENCE_SCHEMA)
    base = items.select("item_key", pid="patient_id", basis=pl.col("basis_date"))
    ct_orders = orders.filter(pl.col("chest_ct") & pl.col("status").is_in([*OPEN_ORDER_STATUSES,
                                                                           *DONE_ORDER_STATUSES]))
    booked = (appointments.filter(pl.col("status").is_in(list(BOOKED_APPOINTMENT_STATUSES)))
              .group_by("order_id").agg(appointment=pl.col("start").min()))
    order_match = (
        base.join(ct_orders, on="pid", how="inner")
        .filter(pl.col("basis").is_null() | (pl.col("authored").is_not_null() & (pl.col("authored") > pl.col("basis")))
                | (pl.col("occurrence").is_not_null() & (pl.col("occurrence") > pl.col("basis"))))
        .join(booked, on="order_id", how="left")
        .sort("item_key", "authored", "order_id", nulls_last=True)
        .group_by("item_key", maintain_order=True)
        .agg(order_ref=pl.col("order_id").first(), order_date=pl.col("authored").first(),
             scheduled_date=pl.coalesce(pl.col("appointment"), pl.col("occurrence")).first(),
             order_done=(pl.col("status").is_in(list(DONE_ORDER_STATUSES))).any(),
             order_done_date=pl.col("occurrence").filter(pl.col("status").is_in(list(DONE_ORDER_STATUSES))).min())
    )
    chest = studies.filter(chest_study).select("pid", "uid", "started")
    study_match = (
        base.join(chest, on="pid", how="inner")
        .filter(pl.col("started").is_not_null()
                & (pl.col("basis").is_null() | (pl.col("started") > pl.col("basis"))))
        .sort("item_key", "started", "uid")
        .group_by("item_key", maintain_order=True)
        .agg(study_uid=pl.col("uid").first(), completed_date=pl.col("started").first())
    )
    out = (
        base.select("item_key")
        .join(order_match, on="item_key", how="left")
        .join(study_match, on="item_key", how="left")
        .with_columns(completed_date=pl.coalesce("completed_date",
                                                 pl.when(pl.col("order_done")).then(pl.col("order_done_date"))),
                      reconciled=pl.col("study_uid").is_in(reported_uids.implode()).fill_null(False))
        .with_columns(evidence_rank=pl.when(pl.col("reconciled")).then(RANKS["reconciled"])
                      .when(pl.col("completed_date").is_not_null() | pl.col("order_done").fill_null(False))
                      .then(RANKS["completed"])
                      .when(pl.col("scheduled_date").is_not_null()).then(RANKS["scheduled"])
                      .when(pl.col("order_ref").is_not_null()).then(RANKS["ordered"])
                      .otherwise(RANKS["recommended"]).cast(pl.Int64))
        .drop("order_done", "order_done_date")
    )
    return out.select(list(ITEM_EVIDENCE_SCHEMA)).cast(ITEM_EVIDENCE_SCHEMA)  # type: ignore[arg-type]


def state_of_rank(rank: int) -> str:
    return LOOP_ORDER[rank].value


def advance(old_rank: int | None, evidence_rank: int) -> int:
    """States only move forward: the higher of what was recorded and what the evidence shows."""
    return evidence_rank if old_rank is None else max(old_rank, evidence_rank)


def is_open_for_queue(loop_state: str, disposition: str | None, deferred_until: date | None, today: date) -> bool:
    """Whether an item belongs on a coordinator's queues today."""
    if disposition == Disposition.DECLINED.value:
        return False
    if disposition == Disposition.DEFERRED.value and deferred_until is not None and deferred_until > today:
        return False
    return loop_state != LoopState.RECONCILED.value
