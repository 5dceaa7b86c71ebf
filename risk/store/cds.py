"""CDS Hooks state: the cards we issued (for feedback), the feedback we received, and the JWT replay cache.

* ``cds_card``: one row per card returned, keyed by ``card.uuid``, with its type (for rates per card type), the
  ``hookInstance`` and the suggestions' uuids. Written off the request path in batches
  (:mod:`risk.cds.ledger`), so issuing a card never waits for the database.
* ``cds_feedback``: one row per distinct feedback item. ``item_digest`` (SHA-256 of the item's canonical JSON)
  is unique, so a client that sends the same feedback twice (the spec allows it) stores it once.
* ``cds_jwt_replay``: ``(iss, jti)`` of every accepted CDS client JWT until it expires; a second use is a replay.

Patient ids are stored as ids only (``Patient/123``); no names, no tokens.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, case, delete, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from risk.store.base import Base


class CdsCard(Base):
    """A card the service returned; ``uuid`` is the ``card.uuid`` the feedback endpoint receives."""

    __tablename__ = "cds_card"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64))
    hook: Mapped[str] = mapped_column(String(64))
    hook_instance: Mapped[str] = mapped_column(String(128), index=True)
    card_type: Mapped[str] = mapped_column(String(64), index=True)
    indicator: Mapped[str] = mapped_column(String(16))
    patient: Mapped[str] = mapped_column(String(256), index=True)
    assessment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    suggestions: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    """``[{"uuid": ..., "label": ...}, ...]`` of the card's suggestions."""


class CdsFeedback(Base):
    """One distinct feedback item (``accepted`` or ``overridden``) for a card."""

    __tablename__ = "cds_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_digest: Mapped[str] = mapped_column(String(64), unique=True)
    service_id: Mapped[str] = mapped_column(String(64))
    card_uuid: Mapped[str] = mapped_column(String(36), index=True)
    card_type: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_suggestions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    override_system: Mapped[str | None] = mapped_column(String(512), nullable=True)
    override_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CdsJwtReplay(Base):
    """A CDS client JWT already accepted: ``key`` is SHA-256 of ``iss`` and ``jti``."""

    __tablename__ = "cds_jwt_replay"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# --- cards ---------------------------------------------------------------------------------------------------
def insert_cards(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert issued cards in one executemany (rows use the column names of :class:`CdsCard`).

    A Core insert on the session's connection: the ORM's bulk path costs ~60% more CPU per row for nothing here
    (no identity map, no defaults computed in Python), and the card ledger writes a row for every card issued."""
    if rows:
        session.connection().execute(Base.metadata.tables[CdsCard.__tablename__].insert(), list(rows))


def cards_by_uuid(session: Session, uuids: Iterable[str]) -> dict[str, CdsCard]:
    wanted = sorted(set(uuids))
    if not wanted:
        return {}
    return {c.uuid: c for c in session.scalars(select(CdsCard).where(CdsCard.uuid.in_(wanted)))}


# --- feedback ------------------------------------------------------------------------------------------------
def feedback_digest(item: dict[str, Any]) -> str:
    """SHA-256 of a feedback item's canonical JSON: identical items are the same feedback."""
    import orjson

    return hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()


def insert_feedback(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Store feedback rows, skipping digests already stored. Returns how many were new."""
    if not rows:
        return 0
    digests = [r["item_digest"] for r in rows]
    seen = set(session.scalars(select(CdsFeedback.item_digest).where(CdsFeedback.item_digest.in_(digests))))
    new: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["item_digest"] not in seen:
            new.setdefault(r["item_digest"], r)
    stored = 0
    for row in new.values():
        # one savepoint per row: a concurrent writer storing the same digest first is not an error
        try:
            with session.begin_nested():
                session.execute(insert(CdsFeedback), [row])
            stored += 1
        except IntegrityError:
            continue
    return stored


@dataclass(frozen=True, slots=True)
class CardTypeRates:
    """How clinicians responded to one type of card.

    ``accepted``/``overridden`` count cards (not feedback items) by their latest outcome; rates are over the
    cards that received any feedback, and ``issued`` gives the denominator for "ignored".
    """

    card_type: str
    issued: int
    with_feedback: int
    accepted: int
    overridden: int

    @property
    def accept_rate(self) -> float | None:
        return self.accepted / self.with_feedback if self.with_feedback else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.with_feedback if self.with_feedback else None

    @property
    def response_rate(self) -> float | None:
        return self.with_feedback / self.issued if self.issued else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"card_type": self.card_type, "issued": self.issued,
                               "with_feedback": self.with_feedback, "accepted": self.accepted,
                               "overridden": self.overridden}
        for name in ("accept_rate", "override_rate", "response_rate"):
            value = getattr(self, name)
            if value is not None:
                out[name] = round(value, 4)
        return out


def feedback_rates(session: Session, *, since: datetime | None = None,
                   service_id: str | None = None) -> list[CardTypeRates]:
    """Accept and override rates per card type (cards issued since ``since``), for dashboards."""
    card_filter = []
    if since is not None:
        card_filter.append(CdsCard.issued_at >= since)
    if service_id is not None:
        card_filter.append(CdsCard.service_id == service_id)
    issued = dict(session.execute(
        select(CdsCard.card_type, func.count()).where(*card_filter).group_by(CdsCard.card_type)).all())

    # latest feedback per card (by outcome time, then arrival)
    ranked = (
        select(CdsFeedback.card_uuid, CdsFeedback.card_type, CdsFeedback.outcome,
               func.row_number().over(partition_by=CdsFeedback.card_uuid,
                                      order_by=(CdsFeedback.outcome_timestamp.desc(), CdsFeedback.id.desc()))
               .label("rn"))
        .join(CdsCard, CdsCard.uuid == CdsFeedback.card_uuid)
        .where(*card_filter)
        .subquery()
    )
    latest = select(ranked).where(ranked.c.rn == 1).subquery()
    counts = session.execute(
        select(latest.c.card_type, func.count(),
               func.sum(case((latest.c.outcome == "accepted", 1), else_=0)),
               func.sum(case((latest.c.outcome == "overridden", 1), else_=0)))
        .group_by(latest.c.card_type)).all()
    by_type = {t: (int(n), int(a or 0), int(o or 0)) for t, n, a, o in counts}
    out = []
    for card_type in sorted(set(issued) | set(by_type)):
        n, a, o = by_type.get(card_type, (0, 0, 0))
        out.append(CardTypeRates(card_type=card_type, issued=int(issued.get(card_type, 0)), with_feedback=n,
                                 accepted=a, overridden=o))
    return out


def override_reason_counts(session: Session, card_type: str | None = None) -> list[tuple[str, str, int]]:
    """``(system, code, count)`` of override reasons given, most frequent first."""
    stmt = (select(CdsFeedback.override_system, CdsFeedback.override_code, func.count())
            .where(CdsFeedback.override_code.is_not(None))
            .group_by(CdsFeedback.override_system, CdsFeedback.override_code)
            .order_by(func.count().desc()))
    if card_type is not None:
        stmt = stmt.where(CdsFeedback.card_type == card_type)
    return [(s or "", c or "", int(n)) for s, c, n in session.execute(stmt).all()]


# --- JWT replay cache ----------------------------------------------------------------------------------------
def replay_key(iss: str, jti: str) -> str:
    return hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()


def remember_jtis(connection: Connection, rows: Sequence[tuple[str, datetime]]) -> set[str]:
    """Record many JWT ids in one round trip (``INSERT ... ON CONFLICT DO NOTHING RETURNING key``, SQLite ≥ 3.35 and
    PostgreSQL); returns the keys that were new. A key already stored (by any process) is a replay.

    The statement is built once per dialect and the rows go as parameters (SQLAlchemy's "insertmanyvalues"): a
    multi-VALUES statement built per batch would be compiled again for every batch size."""
    if not rows:
        return set()
    values = [{"key": k, "expires_at": e} for k, e in dict(rows).items()]
    return {str(k) for k in connection.execute(_remember_statement(connection.dialect.name), values).scalars()}


@functools.cache
def _remember_statement(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(CdsJwtReplay).on_conflict_do_nothing().returning(CdsJwtReplay.key)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(CdsJwtReplay).on_conflict_do_nothing().returning(CdsJwtReplay.key)
    raise ValueError(f"unsupported database dialect {dialect!r}")  # the store only supports these two


def live_jtis(session: Session, now: datetime | None = None) -> dict[str, datetime]:
    """JWT ids not yet expired (to warm a process's in-memory cache at start)."""
    now = now or datetime.now(UTC)
    return {k: e for k, e in session.execute(
        select(CdsJwtReplay.key, CdsJwtReplay.expires_at).where(CdsJwtReplay.expires_at > now)).all()}


def prune_jtis(session: Session, now: datetime | None = None) -> int:
    """Forget expired JWT ids (they can no longer be replayed: the JWT itself is expired)."""
    result = session.execute(delete(CdsJwtReplay).where(CdsJwtReplay.expires_at <= (now or datetime.now(UTC))))
    return int(getattr(result, "rowcount", 0) or 0)
