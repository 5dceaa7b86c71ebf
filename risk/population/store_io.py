"""Moving polars frames in and out of the store fast, on PostgreSQL (COPY) and SQLite (executemany).

A population run writes up to millions of rows; row-by-row ORM inserts would dominate the run. On PostgreSQL
frames go through ``COPY ... FROM STDIN`` as CSV written by polars (``\\N`` for null), updates through a temporary
table and one ``UPDATE ... FROM``; on SQLite (the embedded default, small populations) through ``executemany``.
All of it runs on the caller's connection, inside its transaction.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import orjson
import polars as pl
from sqlalchemy import JSON, Connection, Engine, Integer, Table, text

from risk.store.base import Base

NULL: Final = "\\N"
_CHUNK_ROWS: Final = 200_000


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


@contextmanager
def _copy(conn: Connection, sql: str) -> Iterator[Any]:
    """psycopg's COPY object on the connection's DBAPI connection (same transaction)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
        yield copy


def table(name: str) -> Table:
    return Base.metadata.tables[name]


def _prepared(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Only the table's columns, with JSON-typed ones serialised and booleans/dates in a COPY-friendly form."""
    return frame.select([c for c in columns if c in frame.columns])


REBUILD_INDEXES_ROWS: Final = 100_000
"""From this many rows, a table's indexes are built once after the COPY instead of maintained row by row: 2.7M
exam rows took 12.3 s with the indexes in place and 8.0 s with drop, COPY, rebuild (PostgreSQL 15, this machine)."""


def insert_frame(conn: Connection, name: str, frame: pl.DataFrame) -> int:
    """Insert every row of ``frame`` (its columns must be columns of the table). PostgreSQL: one COPY; when it adds
    at least :data:`REBUILD_INDEXES_ROWS` rows and more than the table holds, with the table's indexes and key
    constraints dropped first and rebuilt after (a first load of the worklist: 235k items took 5.9 s with its nine
    indexes maintained row by row, 2.7 s with the rebuild). The rebuild locks the table against readers until the
    caller's transaction ends (a COPY alone lets them read the previous rows)."""
    if frame.is_empty():
        return 0
    t = table(name)
    frame = _prepared(frame, [c.name for c in t.columns])
    if not _is_postgres(conn):
        _execute_many(conn, t, frame)
    elif frame.height >= REBUILD_INDEXES_ROWS and _holds_fewer_rows(conn, name, frame.height):
        with _indexes_rebuilt(conn, name):
            _copy_in(conn, name, frame)
    else:
        _copy_in(conn, name, frame)
    return frame.height


def _copy_in(conn: Connection, name: str, frame: pl.DataFrame) -> None:
    col_list = ", ".join(f'"{c}"' for c in frame.columns)
    with _copy(conn, f"COPY {name} ({col_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
        for start in range(0, frame.height, _CHUNK_ROWS):
            buf = io.BytesIO()
            frame.slice(start, _CHUNK_ROWS).write_csv(buf, include_header=False, null_value=NULL,
                                                     date_format="%Y-%m-%d")
            copy.write(buf.getvalue())


def _execute_many(conn: Connection, t: Table, frame: pl.DataFrame) -> None:
    cols = frame.columns
    json_cols = {c.name for c in t.columns if isinstance(c.type, JSON)} & set(cols)
    rows = [dict(zip(cols, r, strict=True)) for r in frame.iter_rows()]
    for row in rows:
        for c in json_cols:
            if isinstance(row[c], str):
                row[c] = orjson.loads(row[c])
    conn.execute(t.insert(), rows)


def _holds_fewer_rows(conn: Connection, name: str, n: int) -> bool:
    """Whether ``name`` has fewer than ``n`` rows (reads at most ``n``)."""
    held = conn.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT :n) AS s"), {"n": n}).scalar_one()
    return int(held) < n


INDEX_BUILD_MEMORY: Final = "256MB"
"""``maintenance_work_mem`` for the index rebuilds (this transaction only): with PostgreSQL's default of 64 MB a
build gets at most one parallel worker (each participant needs 32 MB) and sorts larger key sets on disk."""


def replace_table(conn: Connection, name: str, frame: pl.DataFrame) -> int:
    """Replace every row of ``name`` by ``frame``'s, in the caller's transaction. PostgreSQL: ``TRUNCATE`` (no dead
    rows to vacuum after replacing a million; readers wait for the commit) then :func:`insert_frame` (into the
    empty table: with the indexes rebuilt after the COPY when the frame is large); SQLite: DELETE then insert.

    On PostgreSQL a serial key the frame does not carry is numbered here, 1 to n, and its sequence restarted and
    set to n (in the transaction: a rollback restores it): the same keys as the sequence would give, without a
    ``nextval`` per row (2.7M exam rows: 0.8 s of the COPY's 5.4 s)."""
    if not _is_postgres(conn):
        conn.execute(table(name).delete())
        return insert_frame(conn, name, frame)
    key = _serial_key(table(name))
    if key is None or key in frame.columns:
        conn.execute(text(f"TRUNCATE {name}"))
        return insert_frame(conn, name, frame)
    conn.execute(text(f"TRUNCATE {name} RESTART IDENTITY"))
    rows = insert_frame(conn, name, frame.with_row_index(key, offset=1))
    if rows:  # an empty frame leaves the restarted sequence at its start (setval cannot set 0)
        conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, :c), :n)"), {"t": name, "c": key, "n": rows})
    return rows


def _serial_key(t: Table) -> str | None:
    """The table's primary key column when it is a single integer numbered by the database, else None."""
    key = list(t.primary_key.columns)
    if len(key) == 1 and isinstance(key[0].type, Integer) and key[0].autoincrement in (True, "auto"):
        return key[0].name
    return None


class ConcurrentReplace:
    """:func:`replace_table` on a second PostgreSQL connection, in a thread, while the caller's transaction writes
    other tables: two backends COPY at once. ``then`` runs next on the same connection and transaction (it sees the
    new rows; its result is :attr:`result`). The transaction stays open until :meth:`finish`; the caller joins it
    (:meth:`join`, which re-raises its error) before committing its own, then commits or rolls it back.

    Deadlock-free only when the caller's transaction never touches ``name`` (it would wait for this one's lock
    while this one waits for the caller), and when concurrent callers are serialised on a lock of their own taken
    before this is started (a population run locks ``worklist_item`` first).
    """

    def __init__(self, engine: Engine, name: str, frame: pl.DataFrame,
                 then: Callable[[Connection], Any] | None = None) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"ConcurrentReplace needs PostgreSQL, not {engine.dialect.name}")
        self.name = name
        self._conn = engine.connect()
        self._tx = self._conn.begin()
        self._then = then
        self._error: BaseException | None = None
        self.rows = 0
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, args=(frame,), name=f"replace-{name}", daemon=True)
        self._thread.start()

    def _run(self, frame: pl.DataFrame) -> None:
        try:
            self.rows = replace_table(self._conn, self.name, frame)
            if self._then is not None:
                self.result = self._then(self._conn)
        except BaseException as exc:  # re-raised by join(), in the caller's thread
            self._error = exc

    def join(self) -> int:
        """Wait for the rows to be written (not committed) and ``then`` to return; returns how many rows."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.rows

    def finish(self, *, commit: bool) -> None:
        """Commit (once the caller's transaction has committed) or roll back; closes the connection."""
        self._thread.join()
        try:
            if commit and self._error is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self._conn.close()


@contextmanager
def _indexes_rebuilt(conn: Connection, name: str) -> Iterator[None]:
    """Drop ``name``'s primary-key/unique constraints and other indexes, and recreate them from their own definitions
    on exit (same transaction: other sessions never see the table without them; TRUNCATE already locks it)."""
    constraints = conn.execute(text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u')"), {"t": name}).all()
    indexes = conn.execute(text(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = CAST(:t AS regclass) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"), {"t": name}).all()
    for con, _definition in constraints:
        conn.execute(text(f'ALTER TABLE {name} DROP CONSTRAINT "{con}"'))
    for index, _definition in indexes:
        conn.execute(text(f'DROP INDEX "{index}"'))
    yield
    conn.execute(text(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"))
    for con, definition in constraints:
        conn.execute(text(f'ALTER TABLE {name} ADD CONSTRAINT "{con}" {definition}'))
    for _index, definition in indexes:
        conn.execute(text(definition))


def update_frame(conn: Connection, name: str, key: str, frame: pl.DataFrame, *,
                 expressions: dict[str, str] | None = None) -> int:
    """``UPDATE name SET col = new.col ... WHERE name.key = new.key`` for every row of ``frame``.

    ``expressions`` overrides the SET expression of a column (SQL over ``t`` = the table and ``n`` = the new row),
    e.g. ``{"loop_rank": "CASE WHEN n.loop_rank > t.loop_rank THEN n.loop_rank ELSE t.loop_rank END"}``.
    """
    if frame.is_empty():
        return 0
    t = table(name)
    frame = _prepared(frame, [c.name for c in t.columns])
    cols = [c for c in frame.columns if c != key]
    expressions = expressions or {}
    sets = ", ".join(f'"{c}" = {expressions.get(c, f"n.{c}")}' for c in cols)
    if _is_postgres(conn):
        tmp = f"tmp_{name}_update"
        col_list = ", ".join(f'"{c}"' for c in frame.columns)
        conn.execute(text(f"CREATE TEMPORARY TABLE {tmp} ON COMMIT DROP AS SELECT {col_list} FROM {name} WITH NO DATA"))
        with _copy(conn, f"COPY {tmp} ({col_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
            buf = io.BytesIO()
            frame.write_csv(buf, include_header=False, null_value=NULL, date_format="%Y-%m-%d")
            copy.write(buf.getvalue())
        conn.execute(text(f"UPDATE {name} AS t SET {sets} FROM {tmp} AS n WHERE t.{key} = n.{key}"))
        conn.execute(text(f"DROP TABLE {tmp}"))
        return frame.height
    # SQLite: correlated form, one statement per row through executemany
    sqlite_sets = ", ".join(
        f'"{c}" = ' + expressions.get(c, f":{c}").replace("n.", ":").replace("t.", f"{name}.") for c in cols)
    stmt = text(f"UPDATE {name} SET {sqlite_sets} WHERE {key} = :{key}")
    conn.execute(stmt, [dict(zip(frame.columns, r, strict=True)) for r in frame.iter_rows()])
    return frame.height


def read_frame(conn: Connection, stmt: Any, schema: dict[str, Any]) -> pl.DataFrame:
    """A SELECT's rows as a frame typed by ``schema`` (column names in select order)."""
    names = list(schema)
    if _is_postgres(conn):
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        buf = io.BytesIO()
        with _copy(conn, f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, NULL '\\N')") as copy:
            for chunk in copy:
                buf.write(chunk)
        if buf.tell() == 0:
            return pl.DataFrame(schema=schema)
        as_text = {n: (pl.String if schema[n] in (pl.Boolean, pl.Date) else schema[n]) for n in names}
        frame = pl.read_csv(buf.getvalue(), has_header=False, new_columns=names, schema=as_text,
                            null_values=NULL, quote_char='"')
        casts = []
        for n in names:
            if schema[n] == pl.Boolean:
                casts.append((pl.col(n) == "t").alias(n))
            elif schema[n] == pl.Date:
                casts.append(pl.col(n).str.to_date("%Y-%m-%d").alias(n))
        return frame.with_columns(casts) if casts else frame
    rows = conn.execute(stmt).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")
