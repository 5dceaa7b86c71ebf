"""risk.population.store_io: frames in and out of the store (COPY on PostgreSQL, executemany on SQLite)."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Connection, text

from risk.population import store_io
from risk.store.db import Database

INDEX_SQL = ("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
             "WHERE x.indrelid = CAST('population_exam' AS regclass) ORDER BY 1")
CONSTRAINT_SQL = ("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                  "WHERE conrelid = CAST('population_exam' AS regclass) ORDER BY 1")


def _exams(n: int, first: int = 0) -> pl.DataFrame:
    return pl.DataFrame({
        "patient_id": [f"p{i}" for i in range(first, first + n)],
        "study_uid": [f"1.2.3.{i}" for i in range(first, first + n)],
        "exam_date": [date(2024, 1, 1 + i % 28) for i in range(n)], "screening": [i % 2 == 0 for i in range(n)],
        "exam_kind": ["annual"] * n, "order_code": [None] * n, "reported": [False] * n, "lung_rads": ["2"] * n,
    }, schema_overrides={"order_code": pl.String})


@pytest.mark.integration
@pytest.mark.parametrize("threshold", [10**9, 5], ids=["indexes-kept", "indexes-rebuilt"])
def test_replace_table_on_postgresql_keeps_the_schema(pg_db: Database, monkeypatch: pytest.MonkeyPatch,
                                                       threshold: int) -> None:
    monkeypatch.setattr(store_io, "REBUILD_INDEXES_ROWS", threshold)
    with pg_db.engine.begin() as conn:
        before = (conn.execute(text(INDEX_SQL)).all(), conn.execute(text(CONSTRAINT_SQL)).all())
        store_io.replace_table(conn, "population_exam", _exams(3))
    with pg_db.engine.begin() as conn:
        assert store_io.replace_table(conn, "population_exam", _exams(20, first=100)) == 20
    with pg_db.engine.begin() as conn:
        after = (conn.execute(text(INDEX_SQL)).all(), conn.execute(text(CONSTRAINT_SQL)).all())
        rows = conn.execute(text("SELECT patient_id FROM population_exam ORDER BY id")).scalars().all()
        # the primary key still works: a duplicate id is refused
        with pytest.raises(Exception, match="duplicate key"), conn.begin_nested():
            conn.execute(text("INSERT INTO population_exam (id, patient_id, study_uid, screening, exam_kind, reported)"
                              " SELECT id, 'x', 'y', false, 'annual', false FROM population_exam LIMIT 1"))
    assert after == before and len(before[0]) >= 2
    assert rows == [f"p{i}" for i in range(100, 120)]


@pytest.mark.integration
def test_a_failed_copy_leaves_the_old_rows_and_indexes(pg_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_io, "REBUILD_INDEXES_ROWS", 5)
    with pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(10))
        before = conn.execute(text(INDEX_SQL)).all()
    bad = _exams(10).with_columns(exam_kind=pl.lit("x" * 100))  # longer than the column allows
    with pytest.raises(Exception, match="too long"), pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", bad)
    with pg_db.engine.begin() as conn:
        assert conn.execute(text(INDEX_SQL)).all() == before
        assert conn.execute(text("SELECT count(*) FROM population_exam")).scalar() == 10


@pytest.mark.integration
@pytest.mark.parametrize(("held", "added", "rebuilt"), [(0, 6, True), (5, 6, True), (6, 6, False), (0, 4, False)])
def test_insert_frame_rebuilds_the_indexes_only_for_a_large_insert_into_a_smaller_table(
        pg_db: Database, monkeypatch: pytest.MonkeyPatch, held: int, added: int, rebuilt: bool) -> None:
    monkeypatch.setattr(store_io, "REBUILD_INDEXES_ROWS", 5)
    calls: list[str] = []
    real = store_io._indexes_rebuilt

    def counted(conn: Connection, name: str) -> Any:
        calls.append(name)
        return real(conn, name)

    monkeypatch.setattr(store_io, "_indexes_rebuilt", counted)
    with pg_db.engine.begin() as conn:
        before = (conn.execute(text(INDEX_SQL)).all(), conn.execute(text(CONSTRAINT_SQL)).all())
        store_io.insert_frame(conn, "population_exam", _exams(held))
        calls.clear()
        assert store_io.insert_frame(conn, "population_exam", _exams(added, first=100)) == added
        after = (conn.execute(text(INDEX_SQL)).all(), conn.execute(text(CONSTRAINT_SQL)).all())
        assert conn.execute(text("SELECT count(*) FROM population_exam")).scalar() == held + added
    assert calls == (["population_exam"] if rebuilt else [])
    assert after == before


def test_replace_table_on_sqlite(sqlite_db: Database) -> None:
    with sqlite_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(4))
        store_io.replace_table(conn, "population_exam", _exams(2, first=7))
        assert conn.execute(text("SELECT patient_id FROM population_exam ORDER BY id")).scalars().all() == ["p7", "p8"]


def _patient_ids(db: Database) -> list[str]:
    with db.engine.begin() as conn:
        return list(conn.execute(text("SELECT patient_id FROM population_exam ORDER BY id")).scalars())


@pytest.mark.integration
def test_concurrent_replace_commits_only_when_told(pg_db: Database) -> None:
    with pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(3))
    side = store_io.ConcurrentReplace(pg_db.engine, "population_exam", _exams(5, first=10))
    assert side.join() == 5
    with pg_db.engine.connect() as other:  # not visible before the commit (a reader would wait for the lock)
        other.execute(text("SET lock_timeout = '200ms'"))
        with pytest.raises(Exception, match="lock timeout"):
            other.execute(text("SELECT count(*) FROM population_exam")).scalar()
    side.finish(commit=True)
    assert _patient_ids(pg_db) == [f"p{i}" for i in range(10, 15)]


@pytest.mark.integration
def test_concurrent_replace_rolled_back_keeps_the_old_rows(pg_db: Database) -> None:
    with pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(3))
    side = store_io.ConcurrentReplace(pg_db.engine, "population_exam", _exams(5, first=10))
    side.join()
    side.finish(commit=False)  # the caller's transaction failed
    assert _patient_ids(pg_db) == ["p0", "p1", "p2"]
    failing = store_io.ConcurrentReplace(pg_db.engine, "population_exam",
                                         _exams(5).with_columns(exam_kind=pl.lit("x" * 100)))
    with pytest.raises(Exception, match="too long"):
        failing.join()  # its error reaches the caller, who then rolls back
    failing.finish(commit=True)  # never commits a failed write
    assert _patient_ids(pg_db) == ["p0", "p1", "p2"]


def test_concurrent_replace_needs_postgresql(sqlite_db: Database) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        store_io.ConcurrentReplace(sqlite_db.engine, "population_exam", _exams(1))


@pytest.mark.integration
def test_replace_table_numbers_a_serial_key_as_the_sequence_would(pg_db: Database) -> None:
    with pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(5))
    with pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(3, first=10))
        # the next row the database numbers follows the frame's
        _insert_one(conn, "x")
    with pytest.raises(Exception, match="too long"), pg_db.engine.begin() as conn:
        store_io.replace_table(conn, "population_exam", _exams(8).with_columns(exam_kind=pl.lit("x" * 100)))
    with pg_db.engine.begin() as conn:
        rows = conn.execute(text("SELECT id, patient_id FROM population_exam ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "p10"), (2, "p11"), (3, "p12"), (4, "x")]
        # the failed replace rolled the sequence back with its rows
        _insert_one(conn, "z")
        assert conn.execute(text("SELECT max(id) FROM population_exam")).scalar() == 5
    with pg_db.engine.begin() as conn:  # an empty frame leaves the sequence at its start
        store_io.replace_table(conn, "population_exam", _exams(0))
        _insert_one(conn, "e")
        assert conn.execute(text("SELECT id FROM population_exam")).scalars().all() == [1]


def _insert_one(conn: Connection, patient_id: str) -> None:
    """A row numbered by the database (its id from the table's sequence)."""
    conn.execute(text("INSERT INTO population_exam (patient_id, study_uid, screening, exam_kind, reported) "
                      "VALUES (:p, 'y', false, 'annual', false)"), {"p": patient_id})
