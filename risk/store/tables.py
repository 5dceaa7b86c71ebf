"""Imports every table module so that ``Base.metadata`` knows all tables (for migrations and tests)."""

from risk.store import (
    audit,  # noqa: F401
    cds,  # noqa: F401
    imaging_cache,  # noqa: F401
    population,  # noqa: F401  (population runs, worklist; risk/population)
    smart_session,  # noqa: F401  (SMART app sessions; logic in smart_app/store.py)
)
