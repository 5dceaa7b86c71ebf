"""Where population scoring runs: polars in this process, or the same feature code on a Dask cluster.

``settings.population.engine`` picks one:

* ``polars`` (default): :func:`risk.features.bulk.build_feature_table` in this process (polars uses every core),
  and the fusion model's ``predict_frame``.
* ``dask``: every (resource type, NDJSON file) is one task on the cluster running the *same* per-file stage of
  risk.features.bulk (decode → per-file reduction), the partial tables come back as polars frames and are combined
  by risk.features.bulk's own combine step; so the feature table is identical to the polars engine's. The fusion
  model's XGBoost margins are computed by ``xgboost.dask.inplace_predict`` over a ``dask.dataframe`` of the
  encoded features (partitions built on the workers); the network, blend and calibrator run as in
  fusion_models.runtime. With no ``dask_scheduler`` a ``LocalCluster`` bound to 127.0.0.1 is started (and closed
  after the run).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from risk.config import PopulationSettings
from risk.features import bulk as fb
from risk.sources.bulk import BulkSource, DecodeReport, collect_resources

log = logging.getLogger(__name__)


class FeatureBuilder(Protocol):
    """Builds risk.features.bulk's feature table; ``given`` holds stage outputs already decoded elsewhere."""

    def __call__(self, source: BulkSource, as_of: date, given: Mapping[str, pl.DataFrame]) -> fb.BulkFeatures: ...


def local_features(source: BulkSource, as_of: date, given: Mapping[str, pl.DataFrame]) -> fb.BulkFeatures:
    """risk.features.bulk.build_feature_table in this process, skipping the stages in ``given``; files are decoded
    one at a time with each file's Observations reduced to its latest per patient and role (``reduce_per_file``),
    then across files (``stage_frame``), which bounds memory without changing the table."""
    out = fb.BulkFeatures(pl.DataFrame(schema=fb.FEATURE_SCHEMA))
    frames: dict[str, pl.DataFrame] = dict(given)
    for resource_type, (dtype, transform) in fb.feature_stages(as_of, reduce_per_file=True).items():
        if resource_type in given:
            continue
        started = time.perf_counter()
        report = DecodeReport()
        parts = [collect_resources([path], dtype, transform, report) for path in source.files(resource_type)]
        frames[resource_type] = fb.stage_frame(resource_type, parts)
        out.notes.extend(report.notes(resource_type))
        out.bad_lines += report.count
        out.timings_s[resource_type] = time.perf_counter() - started
    started = time.perf_counter()
    out.table = combine_partitioned(frames, as_of, observations_reduced=True)
    out.timings_s["combine"] = time.perf_counter() - started
    return out


PARTITION_ROWS = 1_000_000
"""Observation facts per partition of the combine step (bounds its memory; see :func:`combine_partitioned`)."""


def combine_partitioned(frames: Mapping[str, pl.DataFrame], as_of: date, partitions: int | None = None, *,
                        observations_reduced: bool = False) -> pl.DataFrame:
    """risk.features.bulk.combine_frames on hash partitions of the patients, concatenated and sorted.

    Every step of the combine works patient by patient (group by patient, join on patient), so running it on
    disjoint sets of patients and concatenating gives the same table; only one partition's working set is in memory
    at a time (for a million patients the single combine needs ~1.6 GiB more than the partitioned one).
    """
    facts = frames.get("Observation")
    n = partitions or max(1, (facts.height if facts is not None else 0) // PARTITION_ROWS)
    if n <= 1:
        return fb.combine_frames(frames, as_of, observations_reduced=observations_reduced)
    parts = []
    for k in range(n):
        part = {name: (f.filter((pl.col("pid").hash(seed=0) % n) == k) if "pid" in f.columns else f)
                for name, f in frames.items()}
        parts.append(fb.combine_frames(part, as_of, observations_reduced=observations_reduced))
        del part
    return pl.concat(parts).sort("patient_id")


def file_stage(resource_type: str, path: str, as_of: date) -> tuple[pl.DataFrame, dict[str, list[int]]]:
    """One task: one file through its stage (runs on a Dask worker). Returns the partial frame and bad lines."""
    dtype, transform = fb.feature_stages(as_of, reduce_per_file=True)[resource_type]
    report = DecodeReport()
    frame = collect_resources([Path(path)], dtype, transform, report)
    return frame, report.bad_lines


@dataclass(slots=True)
class DaskFeatureBuilder:
    """``build_feature_table`` with the per-file stages spread over a Dask cluster."""

    client: Any

    def __call__(self, source: BulkSource, as_of: date, given: Mapping[str, pl.DataFrame]) -> fb.BulkFeatures:
        out = fb.BulkFeatures(pl.DataFrame(schema=fb.FEATURE_SCHEMA))
        started = time.perf_counter()
        futures: dict[str, list[Any]] = {}
        for resource_type in fb.feature_stages(as_of):
            if resource_type in given:
                continue
            futures[resource_type] = [self.client.submit(file_stage, resource_type, str(p), as_of, pure=False)
                                      for p in source.files(resource_type)]
        frames: dict[str, pl.DataFrame] = dict(given)
        for resource_type, fs in futures.items():
            report = DecodeReport()
            parts = []
            for frame, bad in self.client.gather(fs):
                report.bad_lines.update(bad)
                parts.append(frame)
            frames[resource_type] = fb.stage_frame(resource_type, parts)
            out.notes.extend(report.notes(resource_type))
            out.bad_lines += report.count
        out.timings_s["distributed_stages"] = time.perf_counter() - started
        t = time.perf_counter()
        out.table = combine_partitioned(frames, as_of, observations_reduced=True)  # as the polars engine
        out.timings_s["combine"] = time.perf_counter() - t
        return out


def _encode(schema: Any, columns: list[str], part: pl.DataFrame) -> Any:
    """One partition's encoded feature matrix as a pandas frame (runs on a worker)."""
    import pandas as pd

    return pd.DataFrame(schema.encode_frame(part), columns=columns)


@dataclass(slots=True)
class DaskFusionScorer:
    """Batch fusion scoring with the XGBoost part on ``xgboost.dask`` (the rest as fusion_models.runtime does)."""

    client: Any
    partitions: int = 2

    def __call__(self, predictor: Any, frame: pl.DataFrame) -> pl.DataFrame:
        import dask
        import dask.dataframe as dd
        import pandas as pd
        import xgboost.dask as dxgb  # explicit import (needs pyarrow)

        from fusion_models.runtime import abstain_reasons_frame

        task = predictor.task_model
        reasons = abstain_reasons_frame(task.schema, task.ranges, frame)
        columns = list(task.schema.encoded_columns)
        bounds = np.linspace(0, frame.height, self.partitions + 1).astype(int)

        schema = task.schema
        parts = [dask.delayed(_encode)(schema, columns, frame.slice(int(a), int(b - a)))
                 for a, b in itertools.pairwise(bounds)]
        meta = pd.DataFrame({c: pd.Series(dtype="float32") for c in columns})
        ddf = dd.from_delayed(parts, meta=meta)
        z_xgb = None
        if task.xgb is not None:
            with dask.config.set({"xgboost.scheduler_address": "127.0.0.1"}):
                z = dxgb.inplace_predict(self.client, task.xgb.booster, ddf, predict_type="margin", missing=np.nan)
                z_xgb = np.asarray(z.compute(), dtype=np.float64).reshape(-1)
        z_net = None
        if task.net is not None:
            z_net = task.net.logits(task.schema.encode_frame(frame))
        p = task.calibrator.predict(task.blend.combine(z_xgb, z_net))
        return pl.DataFrame({"probability": p, "abstain_reason": reasons}).with_columns(
            pl.when(pl.col("abstain_reason").is_null()).then(pl.col("probability")).otherwise(None)
            .alias("probability"))


@dataclass(slots=True)
class Engine:
    name: str
    feature_builder: FeatureBuilder = local_features
    fusion_scorer: Callable[[Any, pl.DataFrame], pl.DataFrame] | None = None
    client: Any = None


@contextmanager
def open_engine(settings: PopulationSettings, *, engine: str | None = None) -> Iterator[Engine]:
    """The configured engine; a Dask engine owns its LocalCluster (bound to 127.0.0.1) unless a scheduler is set."""
    name = engine or settings.engine
    if name == "polars":
        yield Engine("polars", feature_builder=local_features)
        return
    if name != "dask":
        from risk.errors import InvalidInput

        raise InvalidInput("population.engine", f"must be polars or dask, got {name!r}")
    from distributed import Client, LocalCluster

    if settings.dask_scheduler:
        client = Client(settings.dask_scheduler, timeout="30s")
        cluster = None
    else:
        cluster = LocalCluster(n_workers=settings.dask_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        yield Engine("dask", feature_builder=DaskFeatureBuilder(client),
                     fusion_scorer=DaskFusionScorer(client, partitions=max(2, settings.dask_workers)), client=client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
