"""FHIR output: every resource validates (fhir.resources R4B), bundles are PUT transactions whose references
resolve, NDJSON equals the bundles, values agree with the truth tables, and everything is labelled synthetic."""

from __future__ import annotations

import importlib
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from risk import codes
from risk.synth import model as M
from risk.synth.defaults import DEFAULT_DICOMWEB_URL
from risk.synth.fhir import PatientResources, endpoint
from risk.synth.sites import SITE_A, SITE_B

AS_OF = date(2026, 6, 30)
_MODELS: dict[str, Any] = {}


def _validate(resource: dict[str, Any]) -> None:
    kind = resource["resourceType"]
    if kind not in _MODELS:
        _MODELS[kind] = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
    _MODELS[kind].model_validate(resource)


def _ndjson(cohort_dir: Path, kind: str) -> list[dict[str, Any]]:
    path = cohort_dir / "fhir" / "ndjson" / f"{kind}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("site", [SITE_A, SITE_B])
def test_every_resource_shape_validates_with_r4b_models(site: Any) -> None:
    cohort = M.simulate_chunk(21, site, 0, AS_OF, n=300)
    builder = PatientResources(cohort, ct_matrix=64)
    resources = [r for i in range(builder.n) for r in builder.resources(i)]
    resources.append(endpoint(site, DEFAULT_DICOMWEB_URL))
    for r in resources:
        _validate(r)
    ids = [(r["resourceType"], r["id"]) for r in resources]
    assert len(ids) == len(set(ids))
    # The 300 patients exercise every record-keeping variant, so the validation above covered them.
    seen = Counter(code["code"] for r in resources if r["resourceType"] in ("Observation", "Condition")
                   for code in r["code"]["coding"])
    units = Counter(r["valueQuantity"].get("code") for r in resources if "valueQuantity" in r)
    for expected in (codes.SMOKING_STATUS, codes.PACK_YEARS, codes.CIGARETTES_PER_DAY, codes.SMOKING_QUIT_DATE,
                     codes.BMI, codes.BODY_HEIGHT, codes.HIGHEST_EDUCATION, codes.WBC, codes.FEV1_FVC):
        assert seen[expected.code] > 0, expected
    assert seen[codes.COPD.code] + seen[codes.ICD_COPD.code] > 0
    assert units[None] > 0  # a lab without a unit
    assert units[codes.UNIT_10_9_L] + units[codes.UNIT_G_L] + units[codes.UNIT_MG_DL] > 0
    kinds = Counter(r["resourceType"] for r in resources)
    assert set(kinds) == {"Patient", "Observation", "Condition", "FamilyMemberHistory", "ServiceRequest",
                          "ImagingStudy", "Endpoint"}


def test_ndjson_of_the_cohort_validates_and_is_labelled_synthetic(cohort_dir: Path) -> None:
    tag = codes.SYNTHETIC_DATA_TAG.coding()
    total = 0
    for path in sorted((cohort_dir / "fhir" / "ndjson").glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            r = orjson.loads(line)
            _validate(r)
            assert tag in r["meta"]["tag"]
            assert path.name.split(".")[0] == r["resourceType"]
            total += 1
    manifest = orjson.loads((cohort_dir / "manifest.json").read_bytes())
    assert total == sum(manifest["counts"]["resources"].values())
    for patient in _ndjson(cohort_dir, "Patient"):
        assert "not a real person" in patient["name"][0]["text"]


def test_bundles_are_put_transactions_equal_to_the_ndjson(cohort_dir: Path) -> None:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for path in (cohort_dir / "fhir" / "ndjson").glob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            r = orjson.loads(line)
            by_key[(r["resourceType"], r["id"])] = r
    bundles = sorted((cohort_dir / "fhir" / "bundles").glob("*.json"))
    patients = _ndjson(cohort_dir, "Patient")
    assert [b.stem for b in bundles] == sorted(p["id"] for p in patients)
    seen: set[tuple[str, str]] = set()
    for path in bundles:
        bundle = orjson.loads(path.read_bytes())
        _validate(bundle)
        assert bundle["type"] == "transaction"
        assert bundle["entry"][0]["resource"]["resourceType"] == "Endpoint"
        inside = set()
        for entry in bundle["entry"]:
            r = entry["resource"]
            assert entry["request"] == {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
            assert by_key[(r["resourceType"], r["id"])] == r
            inside.add(f"{r['resourceType']}/{r['id']}")
            seen.add((r["resourceType"], r["id"]))
        for ref in _references(bundle):
            assert ref in inside, (path.name, ref)
    assert seen == set(by_key)


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return out + [x for v in node.values() for x in _references(v)]
    if isinstance(node, list):
        return [x for v in node for x in _references(v)]
    return []


def test_fhir_values_agree_with_the_truth(cohort_dir: Path) -> None:
    truth = pl.read_parquet(cohort_dir / "truth" / "patients.parquet")
    obs = {o["id"]: o for o in _ndjson(cohort_dir, "Observation")}
    conditions = {c["id"]: c for c in _ndjson(cohort_dir, "Condition")}
    patients = {p["id"]: p for p in _ndjson(cohort_dir, "Patient")}
    for row in truth.iter_rows(named=True):
        pid = row["patient_id"]
        patient = patients[pid]
        assert patient["birthDate"] == row["birth_date"].isoformat()
        assert patient["gender"] == row["sex"]
        assert patient["identifier"][0]["value"] == row["mrn"]
        status = obs[f"{pid}-smoking-1"]["valueCodeableConcept"]["coding"][0]["code"]
        answers = {"current": {a.code for a in codes.CURRENT_SMOKER_ANSWERS}, "former": {codes.FORMER_SMOKER.code},
                   "never": {codes.NEVER_SMOKER.code}}
        assert status in answers[row["smoking_status_t0"]]
        if f"{pid}-bmi-1" in obs:
            assert obs[f"{pid}-bmi-1"]["valueQuantity"]["value"] == row["bmi"]
        if f"{pid}-cpd-1" in obs:
            assert obs[f"{pid}-cpd-1"]["valueQuantity"]["value"] == row["cigarettes_per_day"]
        if f"{pid}-packyears-1" in obs:
            assert obs[f"{pid}-packyears-1"]["valueQuantity"] == {
                "value": row["pack_years_t0"], "unit": "pack-years", "system": codes.UCUM, "code": "{pack-years}"}
        assert (f"{pid}-copd" in conditions) == row["copd"]
        assert (f"{pid}-lung-cancer" in conditions) == row["lung_cancer_recorded"]
        if row["lung_cancer_recorded"]:
            assert conditions[f"{pid}-lung-cancer"]["onsetDateTime"] == row["lung_cancer_onset_date"].isoformat()
    assert truth["lung_cancer_recorded"].sum() >= 1  # the fixture cohort has a recorded cancer
    labs = pl.read_parquet(cohort_dir / "truth" / "labs.parquet")
    for row in labs.iter_rows(named=True):
        q = obs[row["observation_id"]]["valueQuantity"]
        assert q["value"] == pytest.approx(row["reported_value"])
        assert q.get("code") == row["reported_unit"]
        assert obs[row["observation_id"]]["code"]["coding"][0]["code"] == row["loinc"]


def test_imaging_study_points_at_the_dicom_and_the_endpoint(cohort_dir: Path) -> None:
    studies = pl.read_parquet(cohort_dir / "truth" / "studies.parquet")
    fhir = {s["id"]: s for s in _ndjson(cohort_dir, "ImagingStudy")}
    orders = {s["id"]: s for s in _ndjson(cohort_dir, "ServiceRequest")}
    (ep,) = _ndjson(cohort_dir, "Endpoint")
    assert ep["address"] == DEFAULT_DICOMWEB_URL
    assert ep["connectionType"]["code"] == "dicom-wado-rs"
    for row in studies.iter_rows(named=True):
        s = fhir[row["imaging_study_id"]]
        assert s["identifier"][0] == {"use": "official", "system": "urn:dicom:uid",
                                      "value": f"urn:oid:{row['study_instance_uid']}"}
        assert s["endpoint"] == [{"reference": f"Endpoint/{ep['id']}"}]
        assert s["started"].startswith(row["study_date"].isoformat())
        ct, sr = s["series"]
        assert ct["uid"] == row["ct_series_instance_uid"] and ct["numberOfInstances"] == row["ct_instances"]
        assert sr["instance"][0]["uid"] == row["sr_sop_instance_uid"]
        study_dir = cohort_dir / "dicom" / row["study_instance_uid"]
        assert len(list((study_dir / ct["uid"]).glob("*.dcm"))) == ct["numberOfInstances"]
        assert (study_dir / sr["uid"] / f"{row['sr_sop_instance_uid']}.dcm").is_file()
        order = orders[s["basedOn"][0]["reference"].split("/")[1]]
        assert order["status"] == "completed" and order["occurrenceDateTime"] == row["study_date"].isoformat()
        screening = row["kind"] in ("baseline", "annual")
        want = codes.CPT_LDCT_SCREENING if screening else codes.CPT_CT_CHEST_WITHOUT_CONTRAST
        assert order["code"]["coding"][0]["code"] == want.code
