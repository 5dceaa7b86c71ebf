"""The SMART app's server-side browser sessions (table ``smart_session``, migration 0004_smart_session).

The table lives with the other tables in risk.store; smart_app/store.py holds the session logic that uses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base


class SmartSessionRow(Base):
    """One browser session of the SMART app (table ``smart_session``, migration 0004_smart_session)."""

    __tablename__ = "smart_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    phase: Mapped[str] = mapped_column(String(16))
    launch_mode: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    iss: Mapped[str] = mapped_column(String(512))
    client_id: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(String(512))
    token_endpoint: Mapped[str] = mapped_column(String(512))
    jwks_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)
    auth_issuer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    requested_scope: Mapped[str] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_verifier: Mapped[str | None] = mapped_column(String(256), nullable=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    refresh_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    granted_scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    encounter_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fhir_user: Mapped[str | None] = mapped_column(String(512), nullable=True)
    need_patient_banner: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    app_context: Mapped[str | None] = mapped_column(Text, nullable=True)
    launch_context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """fhirContext, intent, smart_style_url, tenant from the token response."""
