"""Population scoring and the coordinator worklist: runs, per-patient results, worklist items and their events.

* ``population_run``: one scoring run (inputs digest, model versions, counts, queue counts, duration, status).
* ``population_patient``: the latest result per patient (replaced by each complete run). Holds what the worklist
  pages and the registry export show and what the display-time reasons are recomputed from (risk.population).
* ``population_nodule``: the latest guideline category and next due date per tracked nodule.
* ``population_nodule_cache``: per-patient nodule assessments keyed by a digest of their inputs, so a run only
  re-assesses patients whose imaging or clinical inputs changed.
* ``worklist_item``: one recommendation instance moving through the closed loop (``loop_state``: recommended →
  ordered → scheduled → completed → reconciled, only ever advanced by evidence or a coordinator) plus the
  coordinator's disposition (contacted / declined with reason / deferred until a date), kept apart so a run
  never overwrites a coordinator's action.
* ``worklist_event``: every transition and every coordinator action, with who and when.
* ``coordinator_session``: signed-in coordinators (SMART standalone launch), the browser holds an opaque cookie.

Names and phone numbers are stored for the worklist (coordinators call patients); the audit trail stays ids only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base


class PopulationRun(Base):
    __tablename__ = "population_run"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    as_of: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), index=True)
    engine: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(1024))
    inputs_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    triggered_by: Mapped[str] = mapped_column(String(256))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class PopulationPatient(Base):
    __tablename__ = "population_patient"

    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36))
    site: Mapped[str] = mapped_column(String(64), index=True)
    mrn: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    sex: Mapped[str | None] = mapped_column(String(16), nullable=True)
    race_ethnicity: Mapped[str | None] = mapped_column(String(48), nullable=True)
    age_years: Mapped[int | None] = mapped_column(Integer, nullable=True)
    education_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bmi: Mapped[float | None] = mapped_column(Float, nullable=True)
    copd: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    emphysema: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    personal_history_cancer: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    family_history_lung_cancer: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    immunocompromised: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    lung_cancer: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    smoking_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cigarettes_per_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    smoking_duration_years: Mapped[float | None] = mapped_column(Float, nullable=True)
    pack_years: Mapped[float | None] = mapped_column(Float, nullable=True)
    quit_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    years_since_quit: Mapped[float | None] = mapped_column(Float, nullable=True)
    smoking_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    eligible_uspstf_2021: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    eligible_cms_2022: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    eligible_acs_2023: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    eligible_any: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    plco_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    plco_model: Mapped[str | None] = mapped_column(String(32), nullable=True)
    fusion_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    fusion_abstain_reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    risk: Mapped[float | None] = mapped_column(Float, nullable=True)
    risk_source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    high_risk: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_chest_ct: Mapped[date | None] = mapped_column(Date, nullable=True)
    chest_ct_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    patient_guideline: Mapped[str | None] = mapped_column(String(32), nullable=True)
    patient_category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nodule_due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    annual_window_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    annual_due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    annual_overdue_after: Mapped[date | None] = mapped_column(Date, nullable=True)
    sdm_documented: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    assessed_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """``vectorised`` (population rules) or ``assess`` (the per-patient risk.assess path)."""


class PopulationNodule(Base):
    __tablename__ = "population_nodule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    track_id: Mapped[str] = mapped_column(String(128))
    tracking_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    guideline: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(256))
    management: Mapped[str] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    study_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    description: Mapped[str | None] = mapped_column(String(512), nullable=True)


class PopulationExam(Base):
    """A chest CT of the latest run's export (the registry export's rows are the screening exams). Few indexes and
    no run id: a million patients have millions of exams, rewritten by every run."""

    __tablename__ = "population_exam"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64))
    exam_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    description: Mapped[str | None] = mapped_column(String(512), nullable=True)
    screening: Mapped[bool] = mapped_column(Boolean)
    exam_kind: Mapped[str] = mapped_column(String(16))
    order_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reported: Mapped[bool] = mapped_column(Boolean)
    lung_rads: Mapped[str | None] = mapped_column(String(8), nullable=True)


class PopulationNoduleCache(Base):
    __tablename__ = "population_nodule_cache"

    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    input_digest: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[date] = mapped_column(Date)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class WorklistItem(Base):
    __tablename__ = "worklist_item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_key: Mapped[str] = mapped_column(String(256), unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    track_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    guideline: Mapped[str | None] = mapped_column(String(32), nullable=True)
    category: Mapped[str | None] = mapped_column(String(256), nullable=True)
    programs: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Comma-separated screening programs the patient is eligible under (``uspstf_2021,cms_2022``)."""
    text: Mapped[str] = mapped_column(String(512))
    basis: Mapped[str | None] = mapped_column(Text, nullable=True)
    basis_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    window_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    overdue_after: Mapped[date | None] = mapped_column(Date, nullable=True)
    risk: Mapped[float | None] = mapped_column(Float, nullable=True)
    loop_state: Mapped[str] = mapped_column(String(16), index=True)
    loop_rank: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, index=True)
    """Still recommended by the latest run (or still open in the loop); False once closed or superseded."""
    closed_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    order_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    order_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    scheduled_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    completed_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    reconciled_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    disposition: Mapped[str | None] = mapped_column(String(16), nullable=True)
    disposition_reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    deferred_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    disposition_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    disposition_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_run: Mapped[str] = mapped_column(String(36))
    last_run: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorklistEvent(Base):
    __tablename__ = "worklist_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(Integer, index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class CoordinatorSession(Base):
    __tablename__ = "coordinator_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    phase: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    state: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_verifier: Mapped[str | None] = mapped_column(String(256), nullable=True)
    token_endpoint: Mapped[str | None] = mapped_column(String(512), nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)
    auth_issuer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    iss: Mapped[str | None] = mapped_column(String(512), nullable=True)
    user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    program: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sites: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
