"""Imports every table module so that ``Base.metadata`` knows all tables (for migrations and tests)."""

from risk.store import audit  # noqa: F401
