"""CDS Hooks: issued cards, feedback, JWT replay cache.

Revision ID: 0003_cds
Revises: 0002_imaging_feature_cache
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_cds"
down_revision = "0002_imaging_feature_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_card",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("card_type", sa.String(64), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("patient", sa.String(256), nullable=False),
        sa.Column("assessment_id", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suggestions", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name="pk_cds_card"),
    )
    op.create_index("ix_cds_card_hook_instance", "cds_card", ["hook_instance"])
    op.create_index("ix_cds_card_card_type", "cds_card", ["card_type"])
    op.create_index("ix_cds_card_patient", "cds_card", ["patient"])
    op.create_index("ix_cds_card_issued_at", "cds_card", ["issued_at"])

    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_digest", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("card_type", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("override_system", sa.String(512), nullable=True),
        sa.Column("override_code", sa.String(128), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cds_feedback"),
        sa.UniqueConstraint("item_digest", name="uq_cds_feedback_item_digest"),
    )
    op.create_index("ix_cds_feedback_card_uuid", "cds_feedback", ["card_uuid"])
    op.create_index("ix_cds_feedback_card_type", "cds_feedback", ["card_type"])

    op.create_table(
        "cds_jwt_replay",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_cds_jwt_replay"),
    )
    op.create_index("ix_cds_jwt_replay_expires_at", "cds_jwt_replay", ["expires_at"])


def downgrade() -> None:
    op.drop_table("cds_jwt_replay")
    op.drop_table("cds_feedback")
    op.drop_table("cds_card")
