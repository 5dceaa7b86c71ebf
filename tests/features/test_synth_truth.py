"""Snapshots of a `risk synth` cohort match the generator's ground truth (smoking, conditions, labs), and the
polars Bulk path gives the same feature rows as the per-patient path on it.

The truth records what the generator *meant*; the FHIR data leaves some of it unrecorded on purpose (a
patient with only a smoking status, BMI not measured, a lab without a unit, emphysema seen on CT but not on
the problem list). Each comparison below is restricted by the truth's own ``fhir_*`` flags to what the EHR
actually holds, and what was left out must show up as a note, not vanish.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from risk.deadline import Deadline
from risk.domain.provenance import NoteCode
from risk.domain.snapshot import PatientSnapshot
from risk.features.bulk import build_feature_table
from risk.features.online import feature_frame
from risk.loading.backend_auth import BackendServicesAuth
from risk.snapshots import build_snapshot
from risk.sources.bulk import BulkExport
from risk.sources.fhir_file import FileFhirSource
from risk.synth.pipeline import SynthOptions, generate
from tests.features.test_bulk import assert_same


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, date, dict[str, PatientSnapshot], pl.DataFrame]:
    out = tmp_path_factory.mktemp("synth")
    generate(SynthOptions(out=out, patients=240, seed=424242, dicom=False, workers=1))
    as_of = date.fromisoformat(json.loads((out / "manifest.json").read_text())["as_of"])
    source = FileFhirSource(out / "fhir" / "bundles")
    snapshots = {pid: build_snapshot(source, pid, as_of=as_of, deadline=Deadline(30), max_workers=1)
                 for pid in source.patient_ids()}
    return out, as_of, snapshots, feature_frame(snapshots.values())


def truth(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / "truth" / f"{name}.parquet")


def test_every_patient_is_ingested_without_errors(cohort: tuple) -> None:
    out, _as_of, snapshots, features = cohort
    assert features.height == truth(out, "patients").height == 240
    assert not any(s.has_errors for s in snapshots.values())


def test_smoking_matches_truth(cohort: tuple) -> None:
    out, _as_of, _snapshots, features = cohort
    j = features.join(truth(out, "patients"), on="patient_id", suffix="_truth")
    assert j["smoking_status"].to_list() == j["smoking_status_latest"].to_list()
    full = j.filter(pl.col("fhir_smoking_quantities") == "full")
    assert full.height > 100
    assert (full["cigarettes_per_day"] - full["cigarettes_per_day_truth"]).abs().max() < 1e-9
    with_py = j.filter(pl.col("fhir_smoking_quantities").is_in(["full", "pack-years-only"])
                       & (pl.col("smoking_status") != "never"))
    assert (with_py["pack_years"] - with_py["pack_years_t0"]).abs().max() < 1e-6
    assert j.filter(pl.col("smoking_status") == "never")["pack_years"].eq(0.0).all()


def test_smoking_conflicts_are_noted(cohort: tuple) -> None:
    out, _as_of, snapshots, _features = cohort
    flagged = truth(out, "patients").filter(pl.col("fhir_smoking_conflict"))["patient_id"].to_list()
    assert flagged
    for pid in flagged:
        history = snapshots[pid].smoking
        assert history is not None and history.conflicts
        assert any(n.code is NoteCode.CONFLICT for n in snapshots[pid].notes)


def test_conditions_match_truth(cohort: tuple) -> None:
    out, as_of, _snapshots, features = cohort
    j = features.join(truth(out, "patients"), on="patient_id", suffix="_truth")
    assert j["copd"].to_list() == j["copd_truth"].to_list() and j["copd"].sum() > 10
    assert j["personal_history_cancer"].to_list() == j["personal_cancer_history"].to_list()
    assert j["family_history_lung_cancer"].to_list() == j["family_history_lung_cancer_truth"].to_list()
    assert j["lung_cancer"].to_list() == j["lung_cancer_recorded"].to_list()
    recorded = j.filter(pl.col("lung_cancer_recorded"))
    assert recorded["lung_cancer_onset"].to_list() == recorded["lung_cancer_onset_date"].to_list()
    # Emphysema: the truth includes emphysema that was never put on the problem list; never a false positive.
    assert not j.filter(pl.col("emphysema") & ~pl.col("emphysema_truth")).height
    assert j["emphysema"].sum() > 0
    assert all(d is None or d <= as_of for d in j["lung_cancer_onset"].to_list())


def test_labs_match_truth(cohort: tuple) -> None:
    out, _as_of, snapshots, _features = cohort
    got = pl.DataFrame([{"patient_id": pid, "loinc": lab.code.code, "date": lab.effective, "value": lab.value,
                         "unit": lab.unit} for pid, s in snapshots.items() for lab in s.labs])
    labs = truth(out, "labs")
    with_unit = labs.filter(pl.col("reported_unit").is_not_null())
    joined = with_unit.join(got, on=["patient_id", "loinc", "date"], how="left", suffix="_got")
    assert joined["value_got"].null_count() == 0
    assert ((joined["value_got"] - joined["value"]).abs() <= 1e-6 * joined["value"].abs()).all()
    assert (joined["unit_got"] == joined["unit"]).all()
    converted = with_unit.filter(pl.col("reported_unit") != pl.col("unit"))
    assert converted.height > 0  # the unit variants really were exercised
    # A lab without a unit is not guessed: it is left out with a UNIT_MISMATCH note.
    for row in labs.filter(pl.col("reported_unit").is_null()).iter_rows(named=True):
        notes = snapshots[row["patient_id"]].notes
        assert any(n.code is NoteCode.UNIT_MISMATCH and n.source == f"Observation/{row['observation_id']}"
                   for n in notes)


def test_bulk_path_matches_the_snapshots(cohort: tuple) -> None:
    out, as_of, _snapshots, features = cohort
    result = build_feature_table(BulkExport(out / "fhir" / "ndjson"), as_of=as_of)
    assert result.bad_lines == 0
    assert_same(features, result.table)


@pytest.mark.integration
def test_snapshots_from_the_stack_equal_the_file_snapshots(cohort: tuple, tmp_path: Path) -> None:
    """Load 10 of the cohort's bundles into the local stack's FHIR server (ids prefixed, so runs cannot collide)
    and check that REST snapshots give the same rows as the file snapshots that match the truth above."""
    import uuid

    from risk.sources.fhir_rest import RestFhirSource
    from tests.sources.test_fhir import load

    out, as_of, _snapshots, _features = cohort
    prefix = f"it{uuid.uuid4().hex[:6]}-"
    bundles = sorted((out / "fhir" / "bundles").glob("lca-*.json"))[:10]
    folder = tmp_path / "bundles"
    folder.mkdir()
    ids = []
    for path in bundles:
        text = path.read_text().replace('"lca-', f'"{prefix}').replace("/lca-", f"/{prefix}")
        (folder / path.name).write_text(text)
        ids.append(prefix + path.stem.removeprefix("lca-"))
    for path in (out / "fhir" / "bundles").glob("*.json"):
        if not path.name.startswith("lca-"):
            (folder / path.name).write_text(path.read_text())  # the shared Endpoint
    file_source = FileFhirSource(folder)
    local = feature_frame(build_snapshot(file_source, pid, as_of=as_of, deadline=Deadline(30), max_workers=1)
                          for pid in ids)
    env = _stack_env()
    token = _token(env)
    resources = [r for t, i in dict.fromkeys(_all_ids(folder)) if (r := file_source.read(t, i, deadline=Deadline(5)))]
    load(env["STACK_FHIR_BASE_URL"], resources, token)
    with RestFhirSource(env["STACK_FHIR_BASE_URL"], token=token) as rest:
        snaps = [build_snapshot(rest, pid, as_of=as_of, deadline=Deadline(30)) for pid in ids]
    assert all(s.state_of("fhir").value == "ok" for s in snaps)
    assert_same(local, feature_frame(snaps))


def _stack_env() -> dict[str, str]:
    import httpx

    from tests.sources.test_fhir import STACK_ENV

    env = dict(line.split("=", 1) for line in STACK_ENV.read_text().splitlines()
               if "=" in line and not line.startswith("#")) if STACK_ENV.is_file() else {}
    try:
        httpx.get(f"{env['STACK_FHIR_BASE_URL']}/metadata", timeout=5).raise_for_status()
    except (KeyError, httpx.HTTPError) as exc:
        pytest.fail(f"local stack not running: run deploy/local/stack.sh up ({exc!r})")
    return env


def _token(env: dict[str, str]) -> BackendServicesAuth:
    from risk.loading.backend_auth import read_private_jwks

    return BackendServicesAuth(env["STACK_SMART_TOKEN_URL"], env["STACK_BACKEND_CLIENT_ID"],
                               read_private_jwks(Path(env["STACK_BACKEND_PRIVATE_JWKS_FILE"])), scope="system/*.cruds")


def _all_ids(folder: Path) -> list[tuple[str, str]]:
    import orjson

    out = []
    for path in folder.glob("*.json"):
        body = orjson.loads(path.read_bytes())
        for r in ([e["resource"] for e in body["entry"]] if body["resourceType"] == "Bundle" else [body]):
            out.append((r["resourceType"], r["id"]))
    return out
