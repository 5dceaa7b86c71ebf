"""From a run's scores to worklist items, and the merge with the items already in the store.

Item kinds and identity (``item_key``; one item per recommendation instance):

=====================  ==========================================================  ===============================
kind                   when                                                        key
=====================  ==========================================================  ===============================
screening_baseline     eligible (any program) and no chest CT on record            patient | kind
annual_screen          the annual LDCT (eligible; or Lung-RADS 1/2's "12 months")  patient | kind | basis CT date
nodule_follow_up       a tracked nodule's Lung-RADS / Fleischner follow-up or      patient | kind | track | basis
                       work-up (risk.assess recommendations)                       study date
high_risk_no_plan      ``high_risk`` (risk.population.scoring) but no recommended  patient | kind
                       CT, no chest-CT order still open, no chest CT within the
                       policy's stale-CT limit (15 months)
=====================  ==========================================================  ===============================

An item enters the worklist when its order window opens within ``population.due_soon_days`` (screening baseline
and high-risk items at once); it then stays until the closed loop closes it (risk.population.closed_loop). A first
screen's and a high-risk item's due date is the run that first raised it, so their days overdue accumulate.

**Item risk**: the patient's priority risk (fusion, else PLCOm2012); for a nodule item the higher of that and the
nodule's Brock probability.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final

import polars as pl

from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy
from risk.population import rules
from risk.population.closed_loop import RANKS, LoopState, evidence
from risk.population.frames import OPEN_ORDER_STATUSES
from risk.population.scoring import PopulationScores

SYSTEM_ACTOR: Final = "population-run"
ITEM_KINDS: Final = ("screening_baseline", "annual_screen", "nodule_follow_up", "high_risk_no_plan")
FIRST_SEEN_KINDS: Final = ("screening_baseline", "high_risk_no_plan")
"""Kinds whose due date is the first run that raised them (kept across runs)."""

CANDIDATE_SCHEMA: Final = {
    "item_key": pl.String, "patient_id": pl.String, "site": pl.String, "kind": pl.String, "track_id": pl.String,
    "guideline": pl.String, "category": pl.String, "programs": pl.String, "text": pl.String, "basis": pl.String,
    "basis_date": pl.Date, "window_start": pl.Date, "due_date": pl.Date, "overdue_after": pl.Date,
    "risk": pl.Float64,
}
STORED_SCHEMA: Final = {
    "id": pl.Int64, "item_key": pl.String, "patient_id": pl.String, "kind": pl.String, "basis_date": pl.Date,
    "due_date": pl.Date, "loop_state": pl.String, "loop_rank": pl.Int64, "active": pl.Boolean,
    "study_uid": pl.String, "disposition": pl.String,
}


def _programs_expr() -> pl.Expr:
    parts = [pl.when(pl.col(col).fill_null(False)).then(pl.lit(p.value)) for p, col in rules.PROGRAM_COLUMNS.items()]
    return pl.concat_str(parts, separator=",", ignore_nulls=True)


def candidate_items(scores: PopulationScores, *, as_of: date, due_soon_days: int,
                    policy: AssessmentPolicy = DEFAULT_POLICY) -> pl.DataFrame:
    p = scores.patients.select("patient_id", "site", "risk", "high_risk", "last_chest_ct",
                               programs=_programs_expr())
    brock = pl.DataFrame([{"patient_id": pid, "track_id": t, "brock": v}
                          for pid, (_d, r) in scores.nodule_results.items() for t, v in r.brock.items()],
                         schema={"patient_id": pl.String, "track_id": pl.String, "brock": pl.Float64})
    horizon = as_of + timedelta(days=due_soon_days)
    recs = (
        scores.recommendations
        .with_columns(kind=pl.when(pl.col("kind") == "screening_baseline").then(pl.lit("screening_baseline"))
                      .otherwise(pl.col("kind")))
        .join(p, on="patient_id", how="left")
        .join(brock, on=["patient_id", "track_id"], how="left")
    )
    # one annual item per patient (several Lung-RADS 1/2 nodules each say "12 months": the earliest counts)
    annual = (recs.filter(pl.col("kind") == "annual_screen").sort("patient_id", "due_date", "track_id",
                                                                    nulls_last=True)
              .unique("patient_id", keep="first", maintain_order=True))
    recs = pl.concat([recs.filter(pl.col("kind") != "annual_screen"), annual])
    recommended = recs["patient_id"].unique()
    due = recs.filter((pl.col("kind") == "screening_baseline") | pl.col("window_start").is_null()
                      | (pl.col("window_start") <= horizon))
    items = due.select(
        item_key=pl.concat_str([pl.col("patient_id"), pl.col("kind"), pl.col("track_id").fill_null(""),
                                pl.col("basis_date").cast(pl.String).fill_null("")], separator="|")
        .str.strip_chars_end("|"),
        patient_id="patient_id", site="site", kind="kind", track_id="track_id", guideline="guideline",
        category="category", programs="programs", text="text", basis="basis", basis_date="basis_date",
        window_start="window_start", due_date="due_date", overdue_after="overdue_after",
        risk=pl.when(pl.col("kind") == "nodule_follow_up").then(pl.max_horizontal("risk", "brock"))
        .otherwise(pl.col("risk")),
    )
    # high model risk without a plan
    open_orders = (scores.extra.orders.filter(pl.col("chest_ct") & pl.col("status").is_in(list(OPEN_ORDER_STATUSES)))
                   .select(patient_id="pid").unique())
    stale = as_of - timedelta(days=policy.stale_ct_days)
    high = (
        scores.patients.filter(pl.col("high_risk").fill_null(False)
                               & ~pl.col("patient_id").is_in(recommended)
                               & (pl.col("last_chest_ct").is_null() | (pl.col("last_chest_ct") < stale)))
        .join(open_orders, on="patient_id", how="anti")
        .select(
            item_key=pl.col("patient_id") + "|high_risk_no_plan", patient_id="patient_id", site="site",
            kind=pl.lit("high_risk_no_plan"), track_id=pl.lit(None, pl.String), guideline=pl.lit(None, pl.String),
            category=pl.lit(None, pl.String), programs=_programs_expr(),
            text=pl.format("High model risk ({}% by {}) with no screening or follow-up plan",
                           (pl.col("risk") * 100).round(2), pl.col("risk_source")),
            basis=pl.lit("no recommended CT, no open chest-CT order, no chest CT within "
                         f"{policy.stale_ct_days} days"),
            basis_date=pl.col("last_chest_ct"), window_start=pl.lit(as_of), due_date=pl.lit(as_of),
            overdue_after=pl.lit(as_of + timedelta(days=30)), risk="risk")
    )
    return pl.concat([items.cast(CANDIDATE_SCHEMA), high.cast(CANDIDATE_SCHEMA)])  # type: ignore[arg-type]


def merge(stored: pl.DataFrame, candidates: pl.DataFrame, scores: PopulationScores, *, run_id: str, as_of: date,
          now: datetime, reported_uids: pl.Series, policy: AssessmentPolicy = DEFAULT_POLICY
          ) -> tuple[pl.DataFrame, list[pl.DataFrame], pl.DataFrame]:
    """(new items to insert, updates of stored items (frames with different column sets), events rows)."""
    existing = stored.filter(pl.col("active") | pl.col("item_key").is_in(candidates["item_key"].implode()))
    # what needs evidence: this run's candidates and every stored item still in the loop
    carried = existing.filter(~pl.col("item_key").is_in(candidates["item_key"].implode())).select(
        "item_key", "patient_id", "basis_date")
    probe = pl.concat([candidates.select("item_key", "patient_id", "basis_date"), carried])
    ev = evidence(probe, scores.extra.orders, scores.extra.appointments, scores.extra.studies,
                  rules.chest_ct_filter() | pl.col("uid").is_in(reported_uids.implode()), reported_uids)
    # -- candidates ------------------------------------------------------------------------------------------
    cand = candidates.join(ev, on="item_key", how="left").join(
        existing.select("item_key", "id", old_rank="loop_rank", old_due="due_date", old_active="active",
                        old_disposition="disposition"), on="item_key", how="left")
    cand = cand.with_columns(
        loop_rank=pl.max_horizontal(pl.col("old_rank"), pl.col("evidence_rank")).fill_null(0).cast(pl.Int64),
        due_date=pl.when(pl.col("kind").is_in(list(FIRST_SEEN_KINDS)) & pl.col("old_due").is_not_null())
        .then(pl.col("old_due")).otherwise(pl.col("due_date")),
    )
    # -- carried (stored, still open, not recommended any more) --------------------------------------------------
    car = (existing.filter(~pl.col("item_key").is_in(candidates["item_key"].implode()))
           .select("id", "item_key", "loop_rank").join(ev, on="item_key", how="left"))
    car = car.with_columns(loop_rank=pl.max_horizontal("loop_rank", "evidence_rank").cast(pl.Int64))
    reconciled = RANKS[LoopState.RECONCILED.value]

    ordered = RANKS[LoopState.ORDERED.value]

    def closing(frame: pl.DataFrame, still_recommended: bool) -> pl.DataFrame:
        active = pl.col("loop_rank") < reconciled
        if not still_recommended:
            active = active & (pl.col("loop_rank") >= ordered)
        reason: pl.Expr = (pl.when(pl.col("loop_rank") >= reconciled).then(pl.lit("reconciled"))
                           .when(~active).then(pl.lit("superseded")))
        if still_recommended:
            reason = pl.when(pl.col("loop_rank") >= reconciled).then(pl.lit("reconciled"))
        return frame.with_columns(active=active, closed_reason=reason,
                                  loop_state=pl.col("loop_rank").replace_strict(_STATES, return_dtype=pl.String))

    cand = closing(cand, True)
    car = closing(car, False)
    reconciled_date = pl.when(pl.col("loop_rank") >= reconciled).then(pl.lit(as_of))
    system_cols = ["loop_state", "loop_rank", "active", "closed_reason", "order_ref", "order_date",
                   "scheduled_date", "study_uid", "completed_date", "last_run", "updated_at"]
    stamp = {"last_run": pl.lit(run_id), "updated_at": pl.lit(now)}
    inserts = (cand.filter(pl.col("id").is_null())
               .with_columns(**stamp, first_run=pl.lit(run_id), created_at=pl.lit(now),
                             reconciled_date=reconciled_date)
               .drop("id", "old_rank", "old_due", "old_active", "old_disposition", "evidence_rank", "reconciled"))
    updates_c = (cand.filter(pl.col("id").is_not_null()).with_columns(**stamp, reconciled_date=reconciled_date)
                 .select("id", *CANDIDATE_SCHEMA.keys(), *system_cols, "reconciled_date")
                 .drop("item_key"))
    updates_r = (car.with_columns(**stamp, reconciled_date=reconciled_date)
                 .select("id", *system_cols, "reconciled_date"))
    # events: a new item, or a state change / closure of a stored one
    events_new = inserts.select("item_key", from_state=pl.lit(None, pl.String), to_state="loop_state",
                                event=pl.lit("created"), order_ref="order_ref", study_uid="study_uid")
    old = existing.select("item_key", "id", old_state="loop_state", was_active="active")
    changed = (pl.concat([cand.filter(pl.col("id").is_not_null()).select("item_key", "loop_state", "active",
                                                                          "order_ref", "study_uid"),
                          car.select("item_key", "loop_state", "active", "order_ref", "study_uid")])
               .join(old, on="item_key")
               .filter((pl.col("loop_state") != pl.col("old_state")) | (pl.col("active") != pl.col("was_active"))))
    events_old = changed.select(
        "item_key", from_state="old_state", to_state="loop_state",
        event=pl.when(~pl.col("active") & pl.col("was_active")).then(pl.lit("closed"))
        .when(pl.col("active") & ~pl.col("was_active")).then(pl.lit("reopened")).otherwise(pl.lit("state")),
        order_ref="order_ref", study_uid="study_uid")
    events = pl.concat([events_new, events_old])
    return inserts, [updates_c, updates_r], events


_STATES: Final = {i: s.value for i, s in enumerate((LoopState.RECOMMENDED, LoopState.ORDERED, LoopState.SCHEDULED,
                                                    LoopState.COMPLETED, LoopState.RECONCILED))}
