from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
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


# --- the two decoders: Arrow's reader (fast path) and the line idiom (robust path) give the same rows -----------
NESTED = pl.Struct({
    "id": pl.String, "subject": pl.Struct({"reference": pl.String}),
    "code": pl.Struct({"coding": pl.List(pl.Struct({"system": pl.String, "code": pl.String}))}),
    "valueQuantity": pl.Struct({"value": pl.Float64, "unit": pl.String}), "flags": pl.List(pl.String),
})
SHAPES = [
    b'{"resourceType":"Observation","id":"a","subject":{"reference":"Patient/1","display":"x"},'
    b'"code":{"coding":[{"system":"http://loinc.org","code":"1-8","display":"d"},{"code":"x"}],"text":"t"},'
    b'"valueQuantity":{"value":3,"unit":"mg","system":"http://unitsofmeasure.org"},"flags":["p","q"]}',
    b'{"id":"b","valueQuantity":{"value":1e3},"code":{"coding":[]},"flags":[]}',
    b'{"id":"c","valueQuantity":null,"subject":null,"code":null,"flags":null,"_id":{"extension":[]}}',
    b'{"id":"d\\u00e9\\ud83d\\ude00","valueQuantity":{"value":123456789012345678901234567890}}',
    b'{"extra":{"deep":[1,{"z":[null,true]}]},"id":"e"}',
    b'{}',
]


def _both(path: Path, dtype: pl.Struct) -> tuple[pl.DataFrame, pl.DataFrame]:
    from risk.sources.bulk import read_arrow

    return read_arrow(path, dtype).collect(), decode(ndjson_lines(path), dtype).collect()


def test_arrow_reader_and_line_idiom_agree_on_every_shape(tmp_path: Path) -> None:
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(SHAPES) + b"\n\n  \n")  # BOM, CRLF and blank lines included
    fast, robust = _both(f, NESTED)
    assert fast.height == len(SHAPES)
    assert fast.to_dicts() == robust.to_dicts()
    assert fast["id"].to_list() == ["a", "b", "c", "d\u00e9\U0001f600", "e", None]


@pytest.mark.parametrize("line", [
    b'{"id":5}',  # a number where the schema has a string: the line idiom reads "5"
    b'{"id":"a","id":"b"}',  # a duplicated key
    b'{"flags":[1,2]}',  # numbers in a list of strings
])
def test_what_arrow_refuses_goes_the_robust_way_with_the_same_result(tmp_path: Path, line: bytes) -> None:
    from risk.sources.bulk import read_arrow

    f = tmp_path / "Observation.ndjson"
    f.write_bytes(SHAPES[0] + b"\n" + line + b"\n")
    with pytest.raises(pa.ArrowInvalid):
        read_arrow(f, NESTED).collect()
    report = DecodeReport()
    got = collect_resources([f], NESTED, lambda lf: lf, report)
    assert got.to_dicts() == decode(ndjson_lines(f), NESTED).collect().to_dicts()
    assert got.height == 2 and report.count == 0


def test_a_resource_larger_than_an_arrow_block_is_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import risk.sources.bulk as bulk

    monkeypatch.setattr(bulk, "ARROW_BLOCK_BYTES", 4096)
    big = orjson.dumps({"id": "big", "text": {"div": "x" * 20_000}})
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b"\n".join([SHAPES[1], big, SHAPES[4]]) + b"\n")
    with pytest.raises(pa.ArrowInvalid):
        bulk.read_arrow(f, NESTED).collect()
    assert collect_resources([f], NESTED, lambda lf: lf.select("id"))["id"].to_list() == ["b", "big", "e"]


def test_empty_and_blank_files_give_no_rows(tmp_path: Path) -> None:
    (tmp_path / "Observation.000.ndjson").write_bytes(b"")
    (tmp_path / "Observation.001.ndjson").write_bytes(b"\n \n")
    (tmp_path / "Observation.002.ndjson").write_bytes(SHAPES[1] + b"\n")
    report = DecodeReport()
    got = collect_resources(BulkExport(tmp_path).files("Observation"), NESTED, lambda lf: lf.select("id"), report)
    assert got["id"].to_list() == ["b"] and report.count == 0


def test_every_field_type_of_the_decode_schemas_maps_to_arrow() -> None:
    from risk.features import bulk as fb
    from risk.population import frames
    from risk.sources.bulk import arrow_type

    for dtype in (fb.PATIENT_DTYPE, fb.OBSERVATION_DTYPE, fb.CONDITION_DTYPE, fb.FAMILY_DTYPE, fb.IMAGING_DTYPE,
                  frames.PATIENT_EXTRA_DTYPE, frames.STUDY_DTYPE, frames.ORDER_DTYPE, frames.APPOINTMENT_DTYPE,
                  frames.PROCEDURE_DTYPE):
        assert isinstance(arrow_type(dtype), pa.StructType)
    with pytest.raises(TypeError, match='"dtype"'):
        arrow_type(pl.Date)
