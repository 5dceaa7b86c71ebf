"""The imaging-feature cache table: what one SR instance said, parsed once, keyed by SOP Instance UID.

Rows are written and read by :class:`risk.imaging.cache.ImagingFeatureCache`; ``parser_version`` lets a newer
parser ignore (and overwrite) rows an older one wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base


class ImagingFeatureCacheRow(Base):
    """One parsed SR instance: its nodule observations and ingestion notes, as JSON."""

    __tablename__ = "imaging_feature_cache"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    parser_version: Mapped[str] = mapped_column(String(32))
    parsed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    is_measurement_report: Mapped[bool] = mapped_column(Boolean)
    observations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    notes: Mapped[list[dict[str, str]]] = mapped_column(JSON)
