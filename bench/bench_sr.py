"""Benchmark: reading a vendor TID 1500 SR, as ratios to floors measured in the same run (issue 4; performance.md §5).

Data: a highdicom Comprehensive 3D SR with ``--groups`` (default 20) planar nodule groups (SCOORD3D points;
tracking id/UID, finding, lobe, algorithm, Long/Short Axis, Diameter, Volume, probability, solidness, margin), over
a small synthetic CT series (tests/support/dicom_factory.py).

Measured (median and p90 of ``--reps`` calls, one process):

* floor ``dcmread``: pydicom reading the SR bytes (lazy);
* floor ``dcmread + walk``: pydicom read + a bare recursive walk collecting every NUM (performance.md §5's
  reference, 37.7 ms for 20 groups on its machine);
* ``parse (highdicom)``: risk.imaging.sr.parse_measurement_report, highdicom's TID 1500 parser + the walk;
* ``parse (walk)``: the same with ``reader="walk"`` (the content-tree walk alone; same observations);
* ``parse (fallback)``: the SR without its root Template Identifier (highdicom's parser is not tried; the walk
  reads it);
* ``cache hit``: ImagingFeatureCache.get of the stored parse (SQLite file);
* ``load_imaging cold`` / ``warm``: the whole pipeline for one patient with one study on a DICOM folder, without
  and with the cache (warm = SR not retrieved, not parsed).

Usage: ``.venv/bin/python bench/bench_sr.py [--groups 20] [--reps 30]``
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _time(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(0.9 * (len(samples) - 1))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()

    import pydicom

    from risk.config import StoreSettings
    from risk.deadline import Deadline
    from risk.imaging.cache import ImagingFeatureCache
    from risk.imaging.geometry import StaticGeometry
    from risk.imaging.pipeline import load_imaging
    from risk.imaging.sr import parse_measurement_report
    from risk.sources.dicomweb import DicomFolderSource
    from risk.store import open_database
    from tests.support.dicom_factory import NoduleSpec, make_ct_series, make_sr, write

    ct = make_ct_series(patient_id="BENCH-1", study_date=date(2025, 1, 1), n_slices=40, size=64)
    specs = [NoduleSpec((float(i % 7) * 3 - 9, float(i // 7) * 3 - 6, -10.0 + i), diameter_mm=5 + i * 0.3,
                        long_axis_mm=5.5 + i * 0.3, short_axis_mm=4 + i * 0.2, volume_mm3=60.0 + 11 * i,
                        probability=0.1 + i / 100, tracking_identifier=f"Nodule {i + 1}", lobe="RUL")
             for i in range(args.groups)]
    sr = make_sr(ct, specs)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    bare = copy.deepcopy(sr)
    del bare.ContentTemplateSequence
    buffer = io.BytesIO()
    bare.save_as(buffer, enforce_file_format=True)
    raw_bare = buffer.getvalue()
    geometry = StaticGeometry.from_datasets(ct)

    def walk(items: Any, out: list[tuple[str, float]]) -> list[tuple[str, float]]:
        for item in items:
            if item.ValueType == "NUM":
                out.append((item.ConceptNameCodeSequence[0].CodeMeaning,
                            float(item.MeasuredValueSequence[0].NumericValue)))
            if "ContentSequence" in item:
                walk(item.ContentSequence, out)
        return out

    expected = parse_measurement_report(pydicom.dcmread(io.BytesIO(raw)), geometry=geometry)
    assert len(expected.observations) == args.groups
    walked = parse_measurement_report(pydicom.dcmread(io.BytesIO(raw_bare)), geometry=geometry)
    assert walked.observations == expected.observations

    results: dict[str, tuple[float, float]] = {}
    results["floor: dcmread"] = _time(lambda: pydicom.dcmread(io.BytesIO(raw)), args.reps)
    results["floor: dcmread + walk"] = _time(lambda: walk(pydicom.dcmread(io.BytesIO(raw)).ContentSequence, []),
                                             args.reps)
    results["parse (highdicom)"] = _time(
        lambda: parse_measurement_report(pydicom.dcmread(io.BytesIO(raw)), geometry=geometry), args.reps)
    results["parse (walk)"] = _time(
        lambda: parse_measurement_report(pydicom.dcmread(io.BytesIO(raw)), geometry=geometry, reader="walk"),
        args.reps)
    results["parse (fallback)"] = _time(
        lambda: parse_measurement_report(pydicom.dcmread(io.BytesIO(raw_bare)), geometry=geometry), args.reps)

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(StoreSettings(url=f"sqlite:///{tmp}/bench.db"))
        cache = ImagingFeatureCache(db)
        cache.put(expected)
        results["cache hit (SQLite)"] = _time(lambda: cache.get(expected.sop_instance_uid), args.reps)
        folder = Path(tmp) / "pacs"
        write(folder, [*ct, sr])
        source = DicomFolderSource(folder)
        source.search_studies()  # index once: the folder index is not what is measured

        def run(with_cache: ImagingFeatureCache | None) -> None:
            result = load_imaging(source, with_cache, dicom_patient_ids=["BENCH-1"], study_uids=[],
                                  as_of=date(2026, 1, 1), deadline=Deadline(60))
            assert len(result.tracks) == args.groups

        results["load_imaging cold (no cache)"] = _time(lambda: run(None), max(5, args.reps // 3))
        warm_cache = ImagingFeatureCache(db)
        run(warm_cache)
        results["load_imaging warm (cache hit)"] = _time(lambda: run(warm_cache), args.reps)
        db.dispose()

    floor = results["floor: dcmread + walk"][0]
    print(f"SR: {args.groups} measurement groups, {len(raw):,} bytes; {args.reps} reps; medians and p90 in ms")
    for name, (median, p90) in results.items():
        print(f"{name:34s} median {median:8.2f}  p90 {p90:8.2f}  = {median / floor:6.2f} x (dcmread + walk)")


if __name__ == "__main__":
    main()
