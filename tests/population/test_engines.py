"""The Dask engine (LocalCluster, 2 workers, bound to 127.0.0.1) gives the same results as the polars engine:
the same feature code per file on the workers, xgboost.dask for the fusion model's trees."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from risk.config import load_settings
from risk.population.engines import open_engine
from risk.population.scoring import ScoringOptions, score_population
from risk.sources.bulk import BulkExport

REGISTRY = Path(__file__).resolve().parents[2] / "fusion_models" / "artifacts"
VERSION = "2026.1-synthetic"




def _score(engine_name: str, ndjson: Path, as_of: date, predictor: object) -> pl.DataFrame:
    settings = load_settings(population={"engine": engine_name, "dask_workers": 2})
    with open_engine(settings.population) as engine:
        if engine.client is not None:
            addresses = list(engine.client.scheduler_info()["workers"])
            assert len(addresses) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in addresses)
        scores = score_population(BulkExport(ndjson), ScoringOptions(
            as_of=as_of, predictor=predictor, feature_builder=engine.feature_builder,  # type: ignore[arg-type]
            fusion_scorer=engine.fusion_scorer))
    return scores.patients.sort("patient_id")


@pytest.mark.slow
def test_dask_gives_identical_results(cohort: Path, cohort_as_of: date, tmp_path: Path) -> None:
    if not (REGISTRY / VERSION / "manifest.json").is_file():
        pytest.skip(f"fusion artifact {VERSION} not in {REGISTRY} (train it with `risk train`)")
    from fusion_models.runtime import load_predictor

    predictor = load_predictor(REGISTRY, VERSION, "patient")
    # split the Observations over three files, so a patient's rows meet on the client (cross-file reduction)
    ndjson = tmp_path / "ndjson"
    ndjson.mkdir()
    for p in (cohort / "fhir" / "ndjson").glob("*.ndjson"):
        lines = p.read_bytes().splitlines(keepends=True)
        if p.name.startswith("Observation"):
            for k in range(3):
                (ndjson / f"Observation.{k:03d}.ndjson").write_bytes(b"".join(lines[k::3]))
        else:
            (ndjson / p.name).write_bytes(b"".join(lines))
    polars_table = _score("polars", ndjson, cohort_as_of, predictor)
    dask_table = _score("dask", ndjson, cohort_as_of, predictor)
    assert polars_table.height == 400 and polars_table["fusion_probability"].is_not_null().sum() > 300
    assert dask_table.equals(polars_table)


def test_local_features_equal_build_feature_table(cohort: Path, cohort_as_of: date, tmp_path: Path) -> None:
    """Patient and ImagingStudy are decoded once for both uses; the feature table is still risk.features.bulk's."""
    from risk.features.bulk import build_feature_table
    from risk.population.engines import local_features
    from risk.population.frames import read_extra
    from tests.features.cohort import AS_OF, write_cohort

    write_cohort(tmp_path, 200, seed=3)
    for folder, as_of in ((cohort / "fhir" / "ndjson", cohort_as_of), (tmp_path / "ndjson", AS_OF)):
        source = BulkExport(folder)
        given = read_extra(source, as_of=as_of, site_systems={}).feature_frames
        assert local_features(source, as_of, given).table.equals(build_feature_table(source, as_of=as_of).table)


def test_the_partitioned_combine_equals_the_single_one(cohort: Path, cohort_as_of: date) -> None:
    from risk.features.bulk import combine_frames, feature_stages
    from risk.population.engines import combine_partitioned
    from risk.sources.bulk import collect_resources

    source = BulkExport(cohort / "fhir" / "ndjson")
    frames = {name: collect_resources(source.files(name), dtype, transform)
              for name, (dtype, transform) in feature_stages(cohort_as_of).items()}
    single = combine_frames(frames, cohort_as_of)
    for n in (2, 5):
        assert combine_partitioned(frames, cohort_as_of, partitions=n).equals(single)
