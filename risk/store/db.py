"""Engine, sessions and schema migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from risk.config import StoreSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Database:
    """An engine plus a session factory. ``upgrade()`` brings the schema to the latest migration."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            db_path = Path(url.removeprefix("sqlite:///"))
            if str(db_path) not in ("", ":memory:"):
                db_path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, echo=echo, pool_pre_ping=True, json_serializer=_json_text,
                                            json_deserializer=orjson.loads)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def upgrade(self, revision: str = "head") -> None:
        command.upgrade(self._alembic_config(), revision)

    def downgrade(self, revision: str) -> None:
        command.downgrade(self._alembic_config(), revision)

    def table_names(self) -> set[str]:
        return set(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        self.engine.dispose()

    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["engine"] = self.engine
        return cfg


def _json_text(value: object) -> str:
    """JSON columns are encoded with orjson (several times faster than the standard library's encoder; the card
    ledger writes one per issued card and audit event). Like ``json.dumps`` it accepts int keys; unlike it, it writes
    NaN as null and datetimes as ISO 8601."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def open_database(settings: StoreSettings, *, migrate: bool = True) -> Database:
    db = Database(settings.url, echo=settings.echo)
    if migrate:
        db.upgrade()
    return db


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: no fsync per commit (a power cut may lose the last commits, never corrupts the file).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
