"""Finding a cohort directory's parts (risk synth's layout) and refusing what is not one."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk.errors import InvalidInput
from risk.loading.cohort import CohortDirectory


def test_layout_is_found_at_any_dicom_depth(tmp_path: Path) -> None:
    (tmp_path / "fhir" / "bundles").mkdir(parents=True)
    (tmp_path / "fhir" / "ndjson").mkdir(parents=True)
    (tmp_path / "fhir" / "bundles" / "b.json").write_text("{}")
    (tmp_path / "fhir" / "ndjson" / "Patient.000.ndjson").write_text("")
    deep = tmp_path / "dicom" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "x.dcm").write_bytes(b"")
    (tmp_path / "dicom" / "y.dcm").write_bytes(b"")
    (tmp_path / "manifest.json").write_text('{"seed": 7, "n_patients": 1, "site": "s", "generator_version": "g"}')
    cohort = CohortDirectory.open(tmp_path)
    assert [p.name for p in cohort.bundle_files] == ["b.json"]
    assert [p.name for p in cohort.ndjson_files] == ["Patient.000.ndjson"]
    assert sorted(p.name for p in cohort.dicom_files) == ["x.dcm", "y.dcm"]
    assert cohort.manifest == {"seed": 7, "n_patients": 1, "site": "s", "generator_version": "g"}
    assert "seed 7" in cohort.describe() and cohort.problems == ()


def test_unreadable_manifest_is_a_note_not_a_stop(tmp_path: Path) -> None:
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "x.dcm").write_bytes(b"")
    (tmp_path / "manifest.json").write_text("[1, 2")
    cohort = CohortDirectory.open(tmp_path)
    assert cohort.manifest is None and "manifest.json unreadable" in cohort.problems[0]


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_not_a_cohort_is_refused_naming_dir(tmp_path: Path, make: object) -> None:
    with pytest.raises(InvalidInput) as err:
        CohortDirectory.open(make(tmp_path))  # type: ignore[operator]
    assert err.value.field == "DIR"
