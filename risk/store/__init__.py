"""Persistence: SQLAlchemy 2 over SQLite (embedded default) or PostgreSQL, schema by Alembic migrations."""

from risk.store.db import Database, open_database

__all__ = ["Database", "open_database"]
