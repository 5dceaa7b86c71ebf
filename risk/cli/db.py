"""``risk db upgrade``: apply schema migrations to the configured store."""

from __future__ import annotations

import argparse

from risk.config import load_settings
from risk.store import open_database


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database maintenance")
    dsub = p.add_subparsers(dest="db_command", required=True)
    up = dsub.add_parser("upgrade", help="apply migrations up to the latest revision")
    up.set_defaults(func=upgrade)


def upgrade(_args: argparse.Namespace) -> int:
    settings = load_settings()
    db = open_database(settings.store, migrate=True)
    print(f"schema up to date: {sorted(db.table_names())}")
    db.dispose()
    return 0
