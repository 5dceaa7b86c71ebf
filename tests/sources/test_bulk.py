from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest

from risk.domain.provenance import NoteCode
from risk.sources.bulk import (
    BulkExport,
    DecodeReport,
    collect_resources,
    decode,
    duckdb_type,
    ndjson_lines,
    read_duckdb,
)

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


# --- the two decoders: DuckDB's reader (fast path) and the line idiom (robust path) give the same rows ----------
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
    b'{"id":5,"flags":[1,true],"valueQuantity":{"value":-0.5,"unit":null}}',  # number/boolean read as text by both
    b'{"id":"f","valueQuantity":{"unit":"mg"},"code":{"coding":[{"code":null}]}}',
]


def _both(path: Path, dtype: pl.Struct) -> tuple[pl.DataFrame, pl.DataFrame]:
    return read_duckdb(path, dtype).collect(), decode(ndjson_lines(path), dtype).collect()


def test_duckdb_reader_and_line_idiom_agree_on_every_shape(tmp_path: Path) -> None:
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(SHAPES) + b"\n\n  \n")  # BOM, CRLF and blank lines included
    fast, robust = _both(f, NESTED)
    assert fast.height == len(SHAPES)
    assert fast.schema == robust.schema
    assert fast.to_dicts() == robust.to_dicts()
    assert fast["id"].to_list() == ["a", "b", "c", "d\u00e9\U0001f600", "e", None, "5", "f"]


@pytest.mark.parametrize("line", [
    b'{"id":"a","id":"b"}',  # a duplicated key
    b'{"valueQuantity":{"value":true}}',  # a boolean where the schema has a number: the line idiom reads 1.0
])
def test_what_duckdb_refuses_goes_the_robust_way_with_the_same_result(tmp_path: Path, line: bytes) -> None:
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(SHAPES[0] + b"\n" + line + b"\n")
    with pytest.raises(duckdb.Error):
        read_duckdb(f, NESTED).collect()
    report = DecodeReport()
    got = collect_resources([f], NESTED, lambda lf: lf, report)
    assert got.to_dicts() == decode(ndjson_lines(f), NESTED).collect().to_dicts()
    assert got.height == 2 and report.count == 0


@pytest.mark.parametrize("line", [
    b'{"id":"x","valueQuantity":{"value":"17"}}',  # a number as a JSON string (DuckDB alone would cast it)
    b'{"id":"x","valueQuantity":{"value":NaN}}',
    b'{"id":"x","valueQuantity":{"value":1e400}}',  # overflows to infinity
    b'{"id":"x","valueQuantity":{"value":[1]}}',
])
def test_a_number_field_holding_anything_but_a_finite_number_is_a_bad_line(tmp_path: Path, line: bytes) -> None:
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(SHAPES[0] + b"\n" + line + b"\n" + SHAPES[1] + b"\n")
    with pytest.raises(duckdb.Error):
        read_duckdb(f, NESTED).collect()
    report = DecodeReport()
    got = collect_resources([f], NESTED, lambda lf: lf.select("id"), report)
    assert got["id"].to_list() == ["a", "b"]
    assert list(report.bad_lines.values()) == [[2]]


def test_what_only_duckdb_accepts(tmp_path: Path) -> None:
    """The documented leniency of the fast path: a trailing comma, and an object where a string is expected (read
    as its JSON text, which no rule matches)."""
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b'{"id":"a","flags":["p",],}\n{"id":{"value":"x"},"subject":{"reference":["Patient/1"]}}\n')
    got = read_duckdb(f, NESTED).collect()
    assert got["flags"].to_list() == [["p"], None]
    assert got["id"].to_list() == ["a", '{"value":"x"}']
    assert got["subject"].struct.field("reference").to_list() == [None, '["Patient/1"]']


def test_checked_fields_inside_lists_and_integers_and_booleans(tmp_path: Path) -> None:
    dtype = pl.Struct({"n": pl.List(pl.Struct({"v": pl.Float64, "k": pl.Int64, "b": pl.Boolean})), "s": pl.String})
    f = tmp_path / "X.ndjson"
    f.write_bytes(b'{"n":[{"v":1,"k":2,"b":true},{"v":null},{}],"s":"x"}\n{"n":null}\n{"n":[]}\n')
    fast, robust = _both(f, dtype)
    assert fast.schema == robust.schema and fast.to_dicts() == robust.to_dicts()
    assert fast["n"].to_list()[0] == [{"v": 1.0, "k": 2, "b": True}, {"v": None, "k": None, "b": None},
                                      {"v": None, "k": None, "b": None}]
    for bad in (b'{"n":[{"k":1.5}]}', b'{"n":[{"b":"yes"}]}', b'{"n":[{"v":"1"}]}'):
        f.write_bytes(bad + b"\n")
        with pytest.raises(duckdb.Error, match="has a JSON value of another type"):
            read_duckdb(f, dtype).collect()


def test_a_resource_larger_than_the_duckdb_limit_is_still_read(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import risk.sources.bulk as bulk

    monkeypatch.setattr(bulk, "MAX_RESOURCE_BYTES", 16 << 20)  # DuckDB's smallest limit
    big = orjson.dumps({"id": "big", "text": {"div": "x" * (40 << 20)}})
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b"\n".join([SHAPES[1], big, SHAPES[4]]) + b"\n")
    with pytest.raises(duckdb.Error):
        bulk.read_duckdb(f, NESTED).collect()
    assert collect_resources([f], NESTED, lambda lf: lf.select("id"))["id"].to_list() == ["b", "big", "e"]


def test_a_refused_file_is_logged_without_its_content(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "Observation.ndjson"
    f.write_bytes(b'{"id":"SECRET-NAME","id":"b"}\n')  # DuckDB's error message quotes the line
    with caplog.at_level("DEBUG", logger="risk.sources.bulk"):
        collect_resources([f], NESTED, lambda lf: lf)
    assert "refused" in caplog.text and "SECRET-NAME" not in caplog.text


def test_empty_and_blank_files_give_no_rows(tmp_path: Path) -> None:
    (tmp_path / "Observation.000.ndjson").write_bytes(b"")
    (tmp_path / "Observation.001.ndjson").write_bytes(b"\n \n")
    (tmp_path / "Observation.002.ndjson").write_bytes(SHAPES[1] + b"\n")
    report = DecodeReport()
    got = collect_resources(BulkExport(tmp_path).files("Observation"), NESTED, lambda lf: lf.select("id"), report)
    assert got["id"].to_list() == ["b"] and report.count == 0


def test_every_field_type_of_the_decode_schemas_maps_to_duckdb(tmp_path: Path) -> None:
    from risk.features import bulk as fb
    from risk.population import frames

    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    for dtype in (fb.PATIENT_DTYPE, fb.OBSERVATION_DTYPE, fb.CONDITION_DTYPE, fb.FAMILY_DTYPE, fb.IMAGING_DTYPE,
                  frames.PATIENT_EXTRA_DTYPE, frames.STUDY_DTYPE, frames.ORDER_DTYPE, frames.APPOINTMENT_DTYPE,
                  frames.PROCEDURE_DTYPE):
        assert read_duckdb(empty, dtype).collect_schema() == pl.Schema(dict(zip(
            [f.name for f in dtype.fields], [f.dtype for f in dtype.fields], strict=True)))
    with pytest.raises(TypeError, match='"dtype"'):
        duckdb_type(pl.Date)
