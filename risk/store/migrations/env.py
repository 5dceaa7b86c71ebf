"""Alembic environment: runs against the engine handed over by risk.store.db.Database."""

from __future__ import annotations

from alembic import context

from risk.store import tables  # noqa: F401  (imports every table module so metadata is complete)
from risk.store.base import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
