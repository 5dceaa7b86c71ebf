"""Imaging-feature cache: parsed SR observations keyed by SOP Instance UID.

Revision ID: 0002_imaging_feature_cache
Revises: 0001_audit
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_imaging_feature_cache"
down_revision = "0001_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imaging_feature_cache",
        sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=True),
        sa.Column("parser_version", sa.String(32), nullable=False),
        sa.Column("parsed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_measurement_report", sa.Boolean(), nullable=False),
        sa.Column("observations", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
    )
    op.create_index("ix_imaging_feature_cache_study_instance_uid", "imaging_feature_cache", ["study_instance_uid"])


def downgrade() -> None:
    op.drop_table("imaging_feature_cache")
