"""``risk features build``, ``risk train``, ``risk models list`` and ``risk recalibrate`` end to end (small data)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from risk.cli import main
from tests.fusion_models.standin import patient_table


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    patient_table(1200, seed=21).write_parquet(out / "patient.parquet")
    (out / "tables.json").write_text(json.dumps({"synthetic": True, "horizon_years": 5.0, "site": "standin"}))
    return out


@pytest.fixture(scope="module")
def trained(tables: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    registry = tmp_path_factory.mktemp("registry")
    assert main(["train", "--table", str(tables / "patient.parquet"), "--out", str(registry), "--version", "cli-1",
                 "--n-boot", "20"]) == 0
    return registry


def test_train_writes_an_artifact_with_the_tables_horizon(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = json.loads((trained / "cli-1" / "patient" / "task.json").read_text())
    assert task["horizon_years"] == 5.0 and task["trained_on_synthetic_data"]
    assert main(["models", "list", "--registry", str(trained)]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["version"] for a in listed] == ["cli-1"] and listed[0]["tasks"] == ["patient"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--table", "/nonexistent.parquet"], "--table: /nonexistent.parquet does not exist"),
    (["--version", "bad version!"], "--version"),
])
def test_train_bad_input_exits_2(tables: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 argv: list[str], message: str) -> None:
    base = {"--table": str(tables / "patient.parquet"), "--out": str(tmp_path), "--version": "v1"}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    assert main(["train", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_without_a_label_or_on_an_existing_version_exits_2(tables: Path, trained: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    unlabeled = tmp_path / "x.parquet"
    pl.read_parquet(tables / "patient.parquet").drop("lung_cancer").write_parquet(unlabeled)
    assert main(["train", "--table", str(unlabeled), "--out", str(tmp_path), "--version", "v"]) == 2
    assert "label column" in capsys.readouterr().err
    assert main(["train", "--table", str(tables / "patient.parquet"), "--out", str(trained), "--version",
                 "cli-1"]) == 2
    assert "already exists" in capsys.readouterr().err
    few = tmp_path / "few.parquet"
    patient_table(100, seed=3).write_parquet(few)
    assert main(["train", "--table", str(few), "--out", str(tmp_path), "--version", "v2"]) == 2
    assert "training needs at least" in capsys.readouterr().err


def test_recalibrate_and_its_guard(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.parquet"
    patient_table(2000, seed=22, shift=0.8).write_parquet(site)
    assert main(["recalibrate", "--registry", str(trained), "--version", "cli-1", "--table", str(site),
                 "--new-version", "cli-1+s", "--out", str(tmp_path), "--site", "s"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parent_version"] == "cli-1" and "patient" in out["tasks"]
    small = tmp_path / "small.parquet"
    patient_table(120, seed=23).write_parquet(small)
    assert main(["recalibrate", "--registry", str(trained), "--version", "cli-1", "--table", str(small),
                 "--new-version", "cli-1+t", "--out", str(tmp_path)]) == 2
    assert "at least 200 rows" in capsys.readouterr().err and not (tmp_path / "cli-1+t").exists()
    assert main(["recalibrate", "--registry", str(trained), "--version", "nope", "--table", str(site),
                 "--new-version", "z", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_features_build_on_a_generated_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from risk.synth.pipeline import SynthOptions, generate

    cohort = tmp_path / "cohort"
    generate(SynthOptions(out=cohort, patients=400, seed=5, ndjson_only=True, workers=1))
    assert main(["features", "build", str(cohort), "--out", str(tmp_path / "t"), "--horizon-years", "3"]) == 0
    info = json.loads((tmp_path / "t" / "tables.json").read_text())
    assert info["horizon_years"] == 3.0 and info["patient_rows"] + info["prevalent_cancers_excluded"] == 400
    patient = pl.read_parquet(tmp_path / "t" / "patient.parquet")
    assert patient.height == info["patient_rows"] and "baseline_plcom2012" in patient.columns
    assert main(["features", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "u")]) == 2
