"""Population scoring and the coordinator worklist: runs, per-patient results, nodules, the nodule-assessment
cache, worklist items and events, coordinator sessions (risk/store/population.py).

Revision ID: 0005_population
Revises: 0004_smart_session
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_population"
down_revision = "0004_smart_session"
branch_labels = None
depends_on = None

TABLES = ("coordinator_session", "worklist_event", "worklist_item", "population_nodule_cache", "population_exam",
          "population_nodule",
          "population_patient", "population_run")


def upgrade() -> None:
    op.create_table(
        "population_run",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("inputs_digest", sa.String(64), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("model_versions", sa.JSON(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("triggered_by", sa.String(256), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_population_run"),
    )
    op.create_index("ix_population_run_started_at", "population_run", ["started_at"])
    op.create_index("ix_population_run_status", "population_run", ["status"])
    op.create_table(
        "population_patient",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("mrn", sa.String(64), nullable=True),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(16), nullable=True),
        sa.Column("race_ethnicity", sa.String(48), nullable=True),
        sa.Column("age_years", sa.Integer(), nullable=True),
        sa.Column("education_level", sa.Integer(), nullable=True),
        sa.Column("bmi", sa.Float(), nullable=True),
        sa.Column("copd", sa.Boolean(), nullable=True),
        sa.Column("emphysema", sa.Boolean(), nullable=True),
        sa.Column("personal_history_cancer", sa.Boolean(), nullable=True),
        sa.Column("family_history_lung_cancer", sa.Boolean(), nullable=True),
        sa.Column("immunocompromised", sa.Boolean(), nullable=True),
        sa.Column("lung_cancer", sa.Boolean(), nullable=True),
        sa.Column("smoking_status", sa.String(16), nullable=True),
        sa.Column("cigarettes_per_day", sa.Float(), nullable=True),
        sa.Column("smoking_duration_years", sa.Float(), nullable=True),
        sa.Column("pack_years", sa.Float(), nullable=True),
        sa.Column("quit_date", sa.Date(), nullable=True),
        sa.Column("years_since_quit", sa.Float(), nullable=True),
        sa.Column("smoking_date", sa.Date(), nullable=True),
        sa.Column("eligible_uspstf_2021", sa.Boolean(), nullable=True),
        sa.Column("eligible_cms_2022", sa.Boolean(), nullable=True),
        sa.Column("eligible_acs_2023", sa.Boolean(), nullable=True),
        sa.Column("eligible_any", sa.Boolean(), nullable=True),
        sa.Column("plco_probability", sa.Float(), nullable=True),
        sa.Column("plco_model", sa.String(32), nullable=True),
        sa.Column("fusion_probability", sa.Float(), nullable=True),
        sa.Column("fusion_abstain_reason", sa.String(512), nullable=True),
        sa.Column("risk", sa.Float(), nullable=True),
        sa.Column("risk_source", sa.String(32), nullable=True),
        sa.Column("high_risk", sa.Boolean(), nullable=True),
        sa.Column("last_chest_ct", sa.Date(), nullable=True),
        sa.Column("chest_ct_count", sa.Integer(), nullable=True),
        sa.Column("patient_guideline", sa.String(32), nullable=True),
        sa.Column("patient_category", sa.String(64), nullable=True),
        sa.Column("nodule_due_date", sa.Date(), nullable=True),
        sa.Column("annual_window_start", sa.Date(), nullable=True),
        sa.Column("annual_due_date", sa.Date(), nullable=True),
        sa.Column("annual_overdue_after", sa.Date(), nullable=True),
        sa.Column("sdm_documented", sa.Boolean(), nullable=True),
        sa.Column("assessed_by", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", name="pk_population_patient"),
    )
    op.create_index("ix_population_patient_site", "population_patient", ["site"])
    op.create_table(
        "population_nodule",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("track_id", sa.String(128), nullable=False),
        sa.Column("tracking_uid", sa.String(64), nullable=True),
        sa.Column("guideline", sa.String(32), nullable=False),
        sa.Column("category", sa.String(256), nullable=False),
        sa.Column("management", sa.Text(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("description", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_population_nodule"),
    )
    op.create_index("ix_population_nodule_patient_id", "population_nodule", ["patient_id"])
    op.create_table(
        "population_exam",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("exam_date", sa.Date(), nullable=True),
        sa.Column("description", sa.String(512), nullable=True),
        sa.Column("screening", sa.Boolean(), nullable=False),
        sa.Column("exam_kind", sa.String(16), nullable=False),
        sa.Column("order_code", sa.String(32), nullable=True),
        sa.Column("reported", sa.Boolean(), nullable=False),
        sa.Column("lung_rads", sa.String(8), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_population_exam"),
    )
    op.create_index("ix_population_exam_exam_date", "population_exam", ["exam_date"])
    op.create_table(
        "population_nodule_cache",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("input_digest", sa.String(64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", name="pk_population_nodule_cache"),
    )
    op.create_table(
        "worklist_item",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_key", sa.String(256), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("track_id", sa.String(128), nullable=True),
        sa.Column("guideline", sa.String(32), nullable=True),
        sa.Column("category", sa.String(256), nullable=True),
        sa.Column("programs", sa.String(64), nullable=True),
        sa.Column("text", sa.String(512), nullable=False),
        sa.Column("basis", sa.Text(), nullable=True),
        sa.Column("basis_date", sa.Date(), nullable=True),
        sa.Column("window_start", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("overdue_after", sa.Date(), nullable=True),
        sa.Column("risk", sa.Float(), nullable=True),
        sa.Column("loop_state", sa.String(16), nullable=False),
        sa.Column("loop_rank", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("closed_reason", sa.String(64), nullable=True),
        sa.Column("order_ref", sa.String(128), nullable=True),
        sa.Column("order_date", sa.Date(), nullable=True),
        sa.Column("scheduled_date", sa.Date(), nullable=True),
        sa.Column("study_uid", sa.String(64), nullable=True),
        sa.Column("completed_date", sa.Date(), nullable=True),
        sa.Column("reconciled_date", sa.Date(), nullable=True),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.Column("disposition_reason", sa.String(512), nullable=True),
        sa.Column("deferred_until", sa.Date(), nullable=True),
        sa.Column("disposition_by", sa.String(256), nullable=True),
        sa.Column("disposition_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_run", sa.String(36), nullable=False),
        sa.Column("last_run", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_worklist_item"),
        sa.UniqueConstraint("item_key", name="uq_worklist_item_item_key"),
    )
    op.create_index("ix_worklist_item_patient_id", "worklist_item", ["patient_id"])
    op.create_index("ix_worklist_item_site", "worklist_item", ["site"])
    op.create_index("ix_worklist_item_kind", "worklist_item", ["kind"])
    op.create_index("ix_worklist_item_due_date", "worklist_item", ["due_date"])
    op.create_index("ix_worklist_item_loop_state", "worklist_item", ["loop_state"])
    op.create_index("ix_worklist_item_active", "worklist_item", ["active"])
    op.create_index("ix_worklist_item_last_run", "worklist_item", ["last_run"])
    op.create_table(
        "worklist_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_worklist_event"),
    )
    op.create_index("ix_worklist_event_item_id", "worklist_event", ["item_id"])
    op.create_index("ix_worklist_event_at", "worklist_event", ["at"])
    op.create_table(
        "coordinator_session",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(128), nullable=True),
        sa.Column("code_verifier", sa.String(256), nullable=True),
        sa.Column("token_endpoint", sa.String(512), nullable=True),
        sa.Column("jwks_uri", sa.String(512), nullable=True),
        sa.Column("auth_issuer", sa.String(512), nullable=True),
        sa.Column("iss", sa.String(512), nullable=True),
        sa.Column("user", sa.String(256), nullable=True),
        sa.Column("program", sa.String(64), nullable=True),
        sa.Column("sites", sa.JSON(), nullable=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_coordinator_session"),
    )
    op.create_index("ix_coordinator_session_expires_at", "coordinator_session", ["expires_at"])


def downgrade() -> None:
    for name in TABLES:
        op.drop_table(name)
