"""One mapping, two paths: the polars Bulk path gives exactly the rows of the per-patient path."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest

from risk.deadline import Deadline
from risk.features.bulk import build_feature_table, clinical_date, exact_div
from risk.features.online import feature_frame
from risk.features.schema import FEATURE_SCHEMA
from risk.snapshots import build_snapshot
from risk.sources.bulk import BulkExport
from risk.sources.fhir_file import FileFhirSource
from tests.features.cohort import AS_OF, write_cohort


def assert_same(online: pl.DataFrame, bulk: pl.DataFrame) -> None:
    assert online.schema == bulk.schema == pl.Schema(FEATURE_SCHEMA)
    assert online["patient_id"].to_list() == bulk["patient_id"].to_list()
    for col in online.columns:
        same = online[col].eq_missing(bulk[col])
        if not same.all():
            rows = same.not_().arg_true().to_list()[:5]
            pytest.fail(f"{col} differs for {[(online['patient_id'][i], online[col][i], bulk[col][i]) for i in rows]}")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("cohort")
    return root, write_cohort(root, 400, seed=20250630, observation_files=3)


def test_online_and_bulk_rows_are_identical(cohort_dir: tuple[Path, list[str]]) -> None:
    root, ids = cohort_dir
    source = FileFhirSource(root / "bundles")
    snapshots = [build_snapshot(source, pid, as_of=AS_OF, deadline=Deadline(30), max_workers=1) for pid in ids]
    online = feature_frame(snapshots)
    result = build_feature_table(BulkExport(root / "ndjson"), as_of=AS_OF)
    assert result.bad_lines == 0 and result.notes == []
    assert_same(online, result.table)
    # the cohort really exercises the rules (guards against a vacuous comparison)
    t = result.table
    assert t["smoking_status"].n_unique() == 5  # current, former, never, unknown, null
    assert t["bmi"].is_not_null().sum() > 100 and t["pack_years"].is_not_null().sum() > 100
    assert t["copd"].sum() > 10 and t["lung_cancer"].sum() > 10 and t["family_history_lung_cancer"].sum() > 10
    assert t["race_ethnicity"].n_unique() == 7 and int(t["ct_study_count"].max()) >= 2  # type: ignore[arg-type]
    assert t["education_level"].is_not_null().sum() > 50 and t["hemoglobin"].is_not_null().sum() > 100


def test_an_earlier_as_of_changes_both_paths_alike(cohort_dir: tuple[Path, list[str]]) -> None:
    root, ids = cohort_dir
    as_of = AS_OF.replace(year=2019)
    source = FileFhirSource(root / "bundles")
    online = feature_frame(build_snapshot(source, pid, as_of=as_of, deadline=Deadline(30), max_workers=1)
                           for pid in ids[:150])
    bulk = build_feature_table(BulkExport(root / "ndjson"), as_of=as_of).table
    assert_same(online, bulk.filter(pl.col("patient_id").is_in(ids[:150])))


def test_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    ids = write_cohort(tmp_path, 20, seed=1, observation_files=1)
    obs = tmp_path / "ndjson" / "Observation.ndjson"
    obs.write_bytes(obs.read_bytes() + b'{"resourceType":"Observation","status":\n')
    result = build_feature_table(BulkExport(tmp_path / "ndjson"), as_of=AS_OF)
    assert result.bad_lines == 1 and len(result.notes) == 1
    assert result.table["patient_id"].to_list() == sorted(ids)


def test_no_files_gives_an_empty_typed_table(tmp_path: Path) -> None:
    result = build_feature_table(BulkExport(tmp_path), as_of=AS_OF)
    assert result.table.is_empty() and result.table.schema == pl.Schema(FEATURE_SCHEMA)


def test_patients_without_other_resources_get_defaults(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_bytes(orjson.dumps({"resourceType": "Patient", "id": "x", "gender": "male",
                                                            "birthDate": "1950-07-01"}))
    row = build_feature_table(BulkExport(tmp_path), as_of=AS_OF).table.row(0, named=True)
    assert (row["age_years"], row["sex"], row["copd"], row["ct_study_count"], row["smoking_status"]) == (
        74, "male", False, 0, None)


def test_expression_helpers_match_python() -> None:
    texts = ["2024-03-05", "2024-03-05T23:30:00-05:00", "2024-03", "2024", "2024-02-30", "2024-2-03", "x", "0000-01-01",
             "\u0662\u0660\u0662\u0664-03-05", "+024-03-05", "2024-03-5 ", "2024-W10-2", "20240305", "2024-03-05junk"]
    from risk.extract.fhirjson import clinical_date as py_date
    got = pl.DataFrame({"t": texts}).select(clinical_date(pl.col("t")))["t"].to_list()
    assert got == [py_date(t) for t in texts]
    values = [0.1 * i + 1e-3 for i in range(1, 2000)]
    divided = pl.DataFrame({"v": values}).select(exact_div(pl.col("v"), 365.25))["v"].to_list()
    assert divided == [v / 365.25 for v in values]
