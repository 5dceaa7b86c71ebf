"""SMART app sessions (server-side; the browser holds only an opaque cookie).

Revision ID: 0004_smart_session
Revises: 0003_cds
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_smart_session"
down_revision = "0003_cds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smart_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("launch_mode", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("iss", sa.String(512), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(512), nullable=False),
        sa.Column("token_endpoint", sa.String(512), nullable=False),
        sa.Column("jwks_uri", sa.String(512), nullable=True),
        sa.Column("auth_issuer", sa.String(512), nullable=True),
        sa.Column("requested_scope", sa.Text(), nullable=False),
        sa.Column("state", sa.String(128), nullable=True),
        sa.Column("code_verifier", sa.String(256), nullable=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("granted_scope", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("encounter_id", sa.String(64), nullable=True),
        sa.Column("fhir_user", sa.String(512), nullable=True),
        sa.Column("need_patient_banner", sa.Boolean(), nullable=True),
        sa.Column("app_context", sa.Text(), nullable=True),
        sa.Column("launch_context", sa.JSON(), nullable=True),
    )
    op.create_index("ix_smart_session_expires_at", "smart_session", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_smart_session_expires_at", table_name="smart_session")
    op.drop_table("smart_session")
