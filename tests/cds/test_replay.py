"""The JWT replay cache: persisted, shared by workers through the database, group-committed."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from risk.cds.security import ReplayCache
from risk.config import StoreSettings
from risk.store import open_database


def _run(cache: ReplayCache, jtis: list[str]) -> list[bool]:
    async def go() -> list[bool]:
        exp = time.time() + 300
        return list(await asyncio.gather(*(cache.first_use("iss", j, exp) for j in jtis)))

    return asyncio.run(go())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/replay.db"
    return str(request.getfixturevalue("postgres_url"))


def test_concurrent_checks_share_a_transaction_and_workers_share_the_store(store_url: str) -> None:
    db = open_database(StoreSettings(url=store_url))
    try:
        first, second = ReplayCache(), ReplayCache()  # two workers, one database
        first.attach(db)
        second.attach(db)
        jtis = [uuid.uuid4().hex for _ in range(40)]
        assert _run(first, jtis) == [True] * 40
        assert first.batches < 40  # group commit: fewer transactions than calls
        assert _run(first, jtis[:3]) == [False] * 3  # this worker remembers
        assert _run(second, jtis[3:6]) == [False] * 3  # another worker finds them in the store
        third = ReplayCache()
        third.attach(db)  # a restarted worker loads the live ids
        assert _run(third, jtis[6:8]) == [False, False]
        assert _run(third, [uuid.uuid4().hex]) == [True]
    finally:
        db.dispose()


def test_same_jti_twice_in_one_batch() -> None:
    cache = ReplayCache()
    assert _run(cache, ["a", "a", "b"]) == [True, False, True]


def test_write_behind_answers_from_memory_persists_and_logs_cross_worker_replays(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/replay.db"))
    try:
        first = ReplayCache(strict=False)
        first.attach(db)
        jtis = [uuid.uuid4().hex for _ in range(5)]

        async def use(cache: ReplayCache, ids: list[str]) -> list[bool]:
            exp = time.time() + 300
            out = [await cache.first_use("iss", j, exp) for j in ids]
            if cache._writer is not None:
                await cache._writer  # let the background write finish
            return out

        assert asyncio.run(use(first, jtis)) == [True] * 5
        assert asyncio.run(use(first, jtis[:1])) == [False]  # this process's map decides at once
        restarted = ReplayCache(strict=False)
        restarted.attach(db)  # persisted: a restart does not reopen the ids
        assert asyncio.run(use(restarted, jtis[1:2])) == [False]
        other_worker = ReplayCache(strict=False)
        other_worker._db = db  # attached before the ids were stored: only the store knows them
        with caplog.at_level("WARNING", logger="risk.cds.security"):
            assert asyncio.run(use(other_worker, jtis[2:3])) == [True]
        assert "replay detected after the fact" in caplog.text
    finally:
        db.dispose()
