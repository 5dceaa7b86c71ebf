"""The end-to-end reference of reference/performance.md §4 (``pipe_polars.py lines_json_decode``), shared by
bench_bulk.py and bench_population.py: every Observation line read as a string column, ``str.json_decode`` of four
fields, last/mean/max/count per (patient, code), pivoted wide. Kept verbatim in substance: it is the floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

SCHEMA: dict[str, Any] = {"subject": pl.Struct({"reference": pl.String}),
                          "code": pl.Struct({"coding": pl.List(pl.Struct({"code": pl.String}))}),
                          "effectiveDateTime": pl.String, "valueQuantity": pl.Struct({"value": pl.Float64})}


def lines(path: str) -> pl.LazyFrame:
    """Each NDJSON line as one string (a separator and quote that never occur)."""
    return pl.scan_csv(path, has_header=False, separator="\x01", quote_char=None, schema={"l": pl.String})


def decode(lf: pl.LazyFrame, dtype: pl.Struct) -> pl.LazyFrame:
    return lf.select(pl.col("l").str.json_decode(dtype).alias("s")).unnest("s")


def observation_files(ndjson: Path) -> list[str]:
    return sorted(str(p) for p in ndjson.glob("Observation*.ndjson"))


def observations_long_and_wide(files: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(long: one row per patient and code, wide: one row per patient) from the Observation files."""
    def tidy(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.select(pid=pl.col("subject").struct.field("reference").str.slice(8),
                         code=pl.col("code").struct.field("coding").list.first().struct.field("code"),
                         t=pl.col("effectiveDateTime"), v=pl.col("valueQuantity").struct.field("value"))

    def agg(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by("pid", "code").agg(last=pl.col("v").sort_by("t").last(), mean=pl.col("v").mean(),
                                              max=pl.col("v").max(), n=pl.len().cast(pl.Float64))

    long = agg(pl.concat([tidy(decode(lines(f), pl.Struct(SCHEMA))) for f in files])).collect()
    wide = long.pivot(on="code", index="pid", values=["last", "mean", "max", "n"]).sort("pid")
    return long, wide
