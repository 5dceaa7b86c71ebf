"""Migrations create the schema on SQLite (embedded default) and PostgreSQL; audit events persist."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk.config import StoreSettings
from risk.store import (
    Database,
    open_database,
    tables,  # noqa: F401
)
from risk.store.audit import recent_audit, record_audit
from risk.store.base import Base


def _exercise(db: Database) -> None:
    assert "audit_event" in db.table_names()
    with db.session() as s:
        record_audit(s, actor="Practitioner/1", action="worklist.view", entity="worklist", detail={"n": 3})
    with db.session() as s:
        events = recent_audit(s, action="worklist.view")
        assert [(e.actor, e.detail) for e in events] == [("Practitioner/1", {"n": 3})]
    # every table in the metadata was created by a migration (no table defined without one)
    assert set(Base.metadata.tables) <= db.table_names()


def test_sqlite_file_database(tmp_path: Path) -> None:
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/sub/risk.db"))
    try:
        _exercise(db)
        db.upgrade()  # idempotent
    finally:
        db.dispose()


def test_session_rolls_back_on_error(tmp_path: Path) -> None:
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/risk.db"))
    try:
        with pytest.raises(RuntimeError), db.session() as s:
            record_audit(s, actor="a", action="x", entity="e")
            raise RuntimeError("boom")
        with db.session() as s:
            assert recent_audit(s) == []
    finally:
        db.dispose()


@pytest.mark.integration
def test_postgresql_database(postgres_url: str) -> None:
    db = open_database(StoreSettings(url=postgres_url))
    try:
        _exercise(db)
        db.downgrade("base")
        assert "audit_event" not in db.table_names()
        db.upgrade()
        assert "audit_event" in db.table_names()
    finally:
        db.dispose()
