"""Audit trail: who did what to which entity, when, with what outcome. Never PHI beyond ids."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from risk.store.base import Base


class AuditEvent(Base):
    """One audited action. ``entity`` is a reference such as ``Patient/123`` or ``worklist``."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity: Mapped[str] = mapped_column(String(256), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


def record_audit(session: Session, *, actor: str, action: str, entity: str, outcome: str = "success",
                 detail: dict[str, Any] | None = None) -> AuditEvent:
    event = AuditEvent(recorded_at=datetime.now(UTC), actor=actor, action=action, entity=entity,
                       outcome=outcome, detail=detail)
    session.add(event)
    return event


def insert_audit_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert audit rows (``audit_event`` column names) in one executemany; a Core insert, for the same reason as
    :func:`risk.store.cds.insert_cards`."""
    if rows:
        session.connection().execute(Base.metadata.tables[AuditEvent.__tablename__].insert(), list(rows))


def recent_audit(session: Session, *, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    return list(session.scalars(stmt))
