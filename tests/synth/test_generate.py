"""``risk synth`` end to end: layout and manifest, byte-identical determinism (any --workers), NDJSON-only mode,
NDJSON distributions against the documented targets, and clear errors for bad options."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from risk import codes
from risk.cli import main
from risk.synth import model as M
from risk.synth.pipeline import SynthOptions, generate

from .conftest import E2E_PATIENTS, E2E_SEED


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_defaults_agree_with_the_generator() -> None:
    from risk.synth import defaults, phantom
    from risk.synth.sites import SITES

    assert tuple(SITES) == defaults.SITE_NAMES
    assert tuple(sorted(phantom.GEOMETRIES)) == defaults.CT_MATRICES


def test_layout_and_manifest(cohort_dir: Path) -> None:
    manifest = json.loads((cohort_dir / "manifest.json").read_text())
    assert manifest["seed"] == E2E_SEED and manifest["n_patients"] == E2E_PATIENTS
    assert manifest["site"] == "site-a" and manifest["as_of"] == "2026-06-30"
    assert manifest["synthetic"] is True and manifest["notice"] == "Synthetic data - not for clinical use"
    assert manifest["generator_version"].startswith("risk.synth ")
    counts = manifest["counts"]
    assert counts["resources"]["Patient"] == E2E_PATIENTS and counts["bundles"] == E2E_PATIENTS
    for kind, files in manifest["ndjson_files"].items():
        lines = sum((cohort_dir / "fhir" / "ndjson" / f).read_bytes().count(b"\n") for f in files)
        assert lines == counts["resources"][kind]
    dicom = list((cohort_dir / "dicom").rglob("*.dcm"))
    assert len(dicom) == counts["ct_instances"] + counts["sr_instances"]
    assert counts["sr_instances"] == counts["studies"]
    for path in dicom:  # OUT/dicom/<Study>/<Series>/<SOP>.dcm
        assert len(path.relative_to(cohort_dir / "dicom").parts) == 3
    for name in ("patients", "studies", "nodules", "labs", "orders"):
        assert pl.read_parquet(cohort_dir / "truth" / f"{name}.parquet").height == counts["truth_rows"][name]


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", 9), ("b", 9), ("c", 10)):
        generate(SynthOptions(out=tmp_path / name, patients=3, seed=seed, ct_matrix=64, workers=1))
        runs.append(_digest(tmp_path / name))
    assert runs[0] == runs[1]
    assert len(runs[0]) > 100
    assert runs[0] != runs[2]
    assert runs[0]["truth/patients.parquet"] != runs[2]["truth/patients.parquet"]


@pytest.mark.slow
def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    # 20 patients with DICOM are three jobs: two worker processes interleave them.
    generate(SynthOptions(out=tmp_path / "one", patients=20, seed=4, ct_matrix=64, workers=1))
    generate(SynthOptions(out=tmp_path / "two", patients=20, seed=4, ct_matrix=64, workers=2))
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_ndjson_only_mode_is_prefix_stable_and_splits_files(tmp_path: Path) -> None:
    small = tmp_path / "small"
    big = tmp_path / "big"
    generate(SynthOptions(out=small, patients=40, seed=2, ndjson_only=True))
    generate(SynthOptions(out=big, patients=80, seed=2, ndjson_only=True, lines_per_file=250))
    assert sorted(p.name for p in small.iterdir()) == ["fhir", "manifest.json", "truth"]
    assert not (small / "fhir" / "bundles").exists()
    manifest = json.loads((big / "manifest.json").read_text())
    parts = manifest["ndjson_files"]["Observation"]
    assert parts[0] == "Observation.000.ndjson" and len(parts) > 2
    sizes = [(big / "fhir" / "ndjson" / p).read_bytes().count(b"\n") for p in parts]
    assert all(n == 250 for n in sizes[:-1]) and 0 < sizes[-1] <= 250
    joined = b"".join((big / "fhir" / "ndjson" / p).read_bytes() for p in parts)
    first40 = (small / "fhir" / "ndjson" / "Observation.ndjson").read_bytes()
    assert joined.startswith(first40)  # patients 1-40 are the same whatever --patients says
    assert pl.read_parquet(big / "truth" / "patients.parquet").head(40).equals(
        pl.read_parquet(small / "truth" / "patients.parquet"))


def test_ndjson_distributions_match_the_documented_targets(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    generate(SynthOptions(out=out, patients=3000, seed=12, ndjson_only=True))
    nd = out / "fhir" / "ndjson"
    patients = pl.read_ndjson(nd / "Patient.ndjson", schema={"id": pl.String, "gender": pl.String})
    assert (patients["gender"] == "female").mean() == pytest.approx(0.45, abs=0.03)
    lines = pl.read_csv(nd / "Observation.ndjson", has_header=False, separator="\x01", quote_char=None,
                        new_columns=["line"], schema={"line": pl.String})
    obs = lines.select(pl.col("line").str.json_decode(pl.Struct({
        "id": pl.String,
        "code": pl.Struct({"coding": pl.List(pl.Struct({"code": pl.String}))}),
        "valueCodeableConcept": pl.Struct({"coding": pl.List(pl.Struct({"code": pl.String}))}),
        "valueQuantity": pl.Struct({"value": pl.Float64, "code": pl.String}),
    })).alias("o")).unnest("o")
    obs = obs.with_columns(pl.col("code").struct.field("coding").list.first().struct.field("code").alias("loinc"))
    status = obs.filter(pl.col("id").str.ends_with("-smoking-1")).with_columns(
        pl.col("valueCodeableConcept").struct.field("coding").list.first().struct.field("code").alias("answer"))
    assert status.height == 3000
    current = status["answer"].is_in([c.code for c in codes.CURRENT_SMOKER_ANSWERS]).mean()
    never = (status["answer"] == codes.NEVER_SMOKER.code).mean()
    assert current == pytest.approx(0.45, abs=0.03) and never == pytest.approx(0.10, abs=0.02)
    bmi = obs.filter(pl.col("loinc") == codes.BMI.code)["valueQuantity"].struct.field("value")
    assert bmi.mean() == pytest.approx(27.8 - 0.8 * 0.45, abs=0.4)
    assert bmi.len() == pytest.approx(3000 * (M.BMI_FORM_P[0] + M.BMI_FORM_P[1]), rel=0.06)
    packs = obs.filter(pl.col("loinc") == codes.PACK_YEARS.code)["valueQuantity"].struct.field("value")
    assert 30 <= float(packs.median()) <= 46  # type: ignore[arg-type]
    dups = obs.filter(pl.col("id").str.ends_with("-dup")).height
    assert dups / (obs.height - dups) == pytest.approx(M.DUPLICATE_OBSERVATION_PER_MILLE / 1000, abs=0.006)
    truth = pl.read_parquet(out / "truth" / "patients.parquet")
    cancers = pl.read_ndjson(nd / "Condition.ndjson", schema={"id": pl.String}).filter(
        pl.col("id").str.contains(r"^lca-\d{7}-lung-cancer$")).height
    assert cancers == truth["lung_cancer_recorded"].sum()
    expected = float(truth["risk_6y"].sum())
    assert truth["lung_cancer"].sum() == pytest.approx(expected, abs=4 * expected ** 0.5)


@pytest.mark.parametrize(("argv", "field"), [
    (["--patients", "0"], "--patients"),
    (["--seed", "-1"], "--seed"),
    (["--as-of", "2026-13-40"], "--as-of"),
    (["--dicomweb-url", "ftp://x"], "--dicomweb-url"),
])
def test_bad_options_exit_2_naming_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], field: str) -> None:
    base = ["synth", "--out", str(tmp_path / "x"), "--patients", "2", "--seed", "1", "--quiet"]
    code = main([*base, *argv])
    assert code == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_refuses_to_overwrite_earlier_output_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synth", "--out", str(tmp_path), "--patients", "2", "--seed", "1", "--no-dicom", "--quiet",
            "--workers", "1"]
    assert main(args) == 0
    first = _digest(tmp_path)
    assert main(args) == 2
    assert "--out" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert _digest(tmp_path) == first
    assert not (tmp_path / "dicom").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["outputs"]["dicom"] is False and manifest["as_of"] == date(2026, 6, 30).isoformat()
