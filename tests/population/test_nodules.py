"""risk.population.nodules.CacheObservations: the imaging-feature cache read for a population run."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from risk.domain import NoduleObservation
from risk.domain.provenance import dicom_ref
from risk.imaging.cache import observation_to_json
from risk.imaging.sr import PARSER_VERSION
from risk.population.nodules import CacheObservations
from risk.store.db import Database
from risk.store.imaging_cache import ImagingFeatureCacheRow


def _row(sop: str, study: str | None, *, nodules: int = 1, version: str = PARSER_VERSION,
         report: bool = True) -> ImagingFeatureCacheRow:
    observations = [observation_to_json(NoduleObservation(study or "x", date(2026, 1, 1), dicom_ref(sop),
                                                          diameter_mm=6.0 + i)) for i in range(nodules)]
    return ImagingFeatureCacheRow(sop_instance_uid=sop, study_instance_uid=study, parser_version=version,
                                  parsed_at=datetime.now(UTC), is_measurement_report=report,
                                  observations=observations, notes=[])


def test_only_the_studies_asked_about_in_every_batch(sqlite_db: Database) -> None:
    with sqlite_db.session() as s:
        s.add_all([_row(f"1.9.{i}", f"1.2.{i}", nodules=i % 3) for i in range(25)])
        s.add_all([_row("1.9.old", "1.2.30", version="0-old"), _row("1.9.kos", "1.2.31", report=False),
                   _row("1.9.none", None)])
    asked = pl.Series(["1.2.3", "1.2.4", "1.2.21", "1.2.30", "1.2.31", "1.2.99", None], dtype=pl.String)
    got = CacheObservations(sqlite_db, batch=4).observations(asked)  # 28 rows in batches of 4
    assert sorted(got) == ["1.2.21", "1.2.3", "1.2.4"]
    assert [len(got[u]) for u in ("1.2.3", "1.2.4", "1.2.21")] == [0, 1, 0]
    assert got["1.2.4"][0].diameter_mm == 6.0 and got["1.2.4"][0].study_instance_uid == "1.2.4"
    assert CacheObservations(sqlite_db).observations(pl.Series([], dtype=pl.String)) == {}
