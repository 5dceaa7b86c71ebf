"""The imaging-feature cache: a parse survives the round trip through the store, keyed by SOP Instance UID."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from risk.config import StoreSettings
from risk.domain import (
    IngestionNote,
    Lobe,
    Margin,
    NoduleComposition,
    NoduleObservation,
    NoteCode,
    NoteSeverity,
    PatientPosition,
    dicom_ref,
)
from risk.imaging.cache import ImagingFeatureCache, observation_from_json, observation_to_json
from risk.imaging.sr import SrParseResult
from risk.store import Database, open_database
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)

SOP = "1.2.826.0.1.3680043.8.498.77"
FULL = NoduleObservation(
    study_instance_uid="1.2.3", study_date=date(2024, 2, 1), source=dicom_ref(SOP, date(2024, 2, 1)),
    composition=NoduleComposition.PART_SOLID, diameter_mm=9.1, long_axis_mm=9.5, short_axis_mm=7.0,
    volume_mm3=402.0, solid_component_mm=4.0, margin=Margin.SPICULATED, lobe=Lobe.LUL,
    position=PatientPosition(1.5, -2.25, 30.0, "1.2.3.9"), tracking_uid="1.2.3.4.5", tracking_identifier="Nodule 1",
    ai_malignancy_probability=0.42, algorithm_name="LungAI", algorithm_version="2.0",
    slice_sop_instance_uid="1.2.3.8", series_instance_uid="1.2.3.6",
)
MINIMAL = NoduleObservation(study_instance_uid="1.2.3", study_date=date(2024, 2, 1), source=dicom_ref(SOP),
                            diameter_mm=4.0)
RESULT = SrParseResult(SOP, "1.2.3", True, (FULL, MINIMAL),
                       (IngestionNote(NoteSeverity.INFO, NoteCode.CODE_NORMALISED, f"urn:dicom:uid:{SOP}", "x"),))


@pytest.mark.parametrize("observation", [FULL, MINIMAL])
def test_observation_json_round_trip(observation: NoduleObservation) -> None:
    assert observation_from_json(observation_to_json(observation)) == observation


def _exercise(db: Database) -> None:
    cache = ImagingFeatureCache(db)
    assert cache.get(SOP) is None
    cache.put(RESULT)
    assert cache.get(SOP) == RESULT
    assert cache.sop_instance_uids("1.2.3") == [SOP]
    cache.put(SrParseResult(SOP, "1.2.3", True, (MINIMAL,), ()))  # replaces
    hit = cache.get(SOP)
    assert hit is not None and hit.observations == (MINIMAL,)
    newer = ImagingFeatureCache(db, parser_version="tid1500-999")
    assert newer.get(SOP) is None  # written by another parser version: a miss
    assert newer.purge_stale() == 1 and cache.get(SOP) is None
    cache.put(RESULT)
    cache.invalidate(SOP)
    assert cache.get(SOP) is None


def _lose_the_insert_race(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer stores the same SR between this writer's read and its insert: the put still succeeds."""
    cache = ImagingFeatureCache(db)
    cache.put(SrParseResult(SOP, "1.2.3", True, (MINIMAL,), ()))  # the other writer's row
    real_get = Session.get
    misses = []

    def stale_get(session: Session, entity: Any, ident: Any, **kw: Any) -> Any:
        if not misses:  # the first read does not see the row yet
            misses.append(ident)
            return None
        return real_get(session, entity, ident, **kw)

    monkeypatch.setattr(Session, "get", stale_get)
    cache.put(RESULT)
    monkeypatch.undo()
    assert misses == [SOP] and cache.get(SOP) == RESULT
    cache.invalidate(SOP)


def test_cache_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_database(StoreSettings(url=f"sqlite:///{tmp_path}/risk.db"))
    try:
        assert "imaging_feature_cache" in db.table_names()
        _exercise(db)
        _lose_the_insert_race(db, monkeypatch)
    finally:
        db.dispose()


@pytest.mark.integration
def test_cache_on_postgresql(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    db = open_database(StoreSettings(url=postgres_url))
    try:
        _exercise(db)
        _lose_the_insert_race(db, monkeypatch)
        caches = [ImagingFeatureCache(db) for _ in range(8)]  # a burst of writers of the same SR, for real
        barrier = threading.Barrier(len(caches))

        def write(cache: ImagingFeatureCache) -> None:
            barrier.wait()
            cache.put(RESULT)

        with ThreadPoolExecutor(len(caches)) as pool:
            list(pool.map(write, caches))
        assert caches[0].get(SOP) == RESULT
        db.downgrade("0001_audit")
        assert "imaging_feature_cache" not in db.table_names()
        db.upgrade()
        assert "imaging_feature_cache" in db.table_names()
    finally:
        db.dispose()
