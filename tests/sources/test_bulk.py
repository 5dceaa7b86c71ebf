from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest

from risk.domain.provenance import NoteCode
from risk.sources.bulk import BulkExport, DecodeReport, collect_resources, decode, ndjson_lines

DTYPE = pl.Struct({"id": pl.String, "valueQuantity": pl.Struct({"value": pl.Float64})})


def test_files_by_name_and_split_names(tmp_path: Path) -> None:
    for name in ("Observation.ndjson", "Observation.000.ndjson", "Observation.001.ndjson", "Patient.ndjson",
                 "ObservationX.ndjson", "Observation.ndjson.gz"):
        (tmp_path / name).write_text("{}\n")
    export = BulkExport(tmp_path)
    assert [p.name for p in export.files("Observation")] == [
        "Observation.000.ndjson", "Observation.001.ndjson", "Observation.ndjson"]
    assert export.files("Condition") == []
    with pytest.raises(ValueError, match="root"):
        BulkExport(tmp_path / "missing")


def test_files_from_a_bulk_manifest(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "obs_1.ndjson").write_text("{}\n")
    manifest = {"transactionTime": "2025-01-01T00:00:00Z", "request": "x", "requiresAccessToken": True,
                "output": [{"type": "Observation", "url": "out/obs_1.ndjson"},
                           {"type": "Observation", "url": f"file://{tmp_path}/out/obs_2.ndjson"},
                           {"type": "Observation", "url": "https://files.example.org/obs_3.ndjson"},
                           {"type": "Patient", "url": "out/pat.ndjson"}]}
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest))
    assert BulkExport(tmp_path).files("Observation") == [tmp_path / "out" / "obs_1.ndjson",
                                                         tmp_path / "out" / "obs_2.ndjson"]


def test_lines_are_decoded_with_only_the_schema_fields(tmp_path: Path) -> None:
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b'{"id":"a","valueQuantity":{"value":1.5,"unit":"x"},"extra":[1,{"deep":true}]}\r\n\n'
                  b'  \n{"id":"b","note":"contains \\u0001 and a quote \\" "}\n')
    df = decode(ndjson_lines(f), DTYPE).collect()
    assert df.to_dicts() == [{"id": "a", "valueQuantity": {"value": 1.5}}, {"id": "b", "valueQuantity": None}]


def test_bad_lines_are_isolated_and_reported(tmp_path: Path) -> None:
    good = [orjson.dumps({"id": f"o{i}", "valueQuantity": {"value": i}}) for i in range(300)]
    lines = list(good)
    lines[17] = b'{"id":"o17","valueQuantity":{"value":"seventeen"}}'  # wrong JSON type for the schema
    lines[250] = b'{"id":"o250","valueQuantity":{"val'  # truncated
    (tmp_path / "Observation.000.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "Observation.001.ndjson").write_bytes(b"\n".join(good[:5]) + b"\n")
    report = DecodeReport()
    df = collect_resources(BulkExport(tmp_path).files("Observation"), DTYPE, lambda lf: lf.select("id"), report)
    assert df.height == 298 + 5 and "o17" not in df["id"].to_list()
    assert report.count == 2
    assert list(report.bad_lines.values()) == [[18, 251]]
    (note,) = report.notes("Observation")
    assert note.code is NoteCode.MALFORMED and "records 18, 251" in note.message


def test_no_files_gives_an_empty_frame() -> None:
    assert collect_resources([], DTYPE, lambda lf: lf).is_empty()
