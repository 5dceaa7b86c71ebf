"""``risk load`` against the real local stack: a tiny cohort (plus a broken Bundle and a junk DICOM file) lands
in the FHIR server and Orthanc, the bad files are named, a re-run changes nothing, and NDJSON input works."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from risk.cli import main
from risk.sources.dicomweb import DicomwebSource
from tests.conftest import Stack
from tests.loading.tiny_cohort import write_tiny_cohort

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_settings_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's RISK_* settings in the environment for this test only (what ``--env-file`` would do)."""
    for key, value in stack.env.items():
        if key.startswith("RISK_"):
            monkeypatch.setenv(key, value)


def pacs(stack: Stack) -> DicomwebSource:
    return DicomwebSource(stack.dicomweb_url, username=stack.pacs_auth[0], password=stack.pacs_auth[1])


def observations(fhir_client: httpx.Client, pid: str) -> list[str]:
    bundle = fhir_client.get("Observation", params={"patient": pid, "_count": "100"}).json()
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []))


@pytest.mark.usefixtures("stack_settings_env")
def test_load_names_bad_files_loads_the_rest_and_reruns_safely(
        stack: Stack, fhir_client: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort = write_tiny_cohort(tmp_path / "cohort", uuid.uuid4().hex[:10], n_patients=2, n_slices=3)
    broken = cohort.root / "fhir" / "bundles" / "broken.json"
    broken.write_text('{"resourceType": "Bundle", "type": "transaction", "entry": [')
    junk = cohort.root / "dicom" / "junk.dcm"
    junk.write_bytes(b"this is no DICOM file")

    assert main(["load", str(cohort.root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED {broken}: not JSON" in out
    assert f"FAILED {junk}: not a readable DICOM file" in out
    assert "FHIR" in out and "3 files, 2 loaded" in out and f"{cohort.n_resources} resources" in out
    assert "DICOM" in out and "7 files, 6 loaded, 0 already present, 1 failed; 6 instances" in out

    source = pacs(stack)
    for pid in cohort.patient_ids:
        assert fhir_client.get(f"Patient/{pid}").status_code == 200
        assert observations(fhir_client, pid) == [f"{pid}-packyears", f"{pid}-smoking"]
        (study,) = source.search_studies(patient_id=pid)
        assert study.study_instance_uid == cohort.study_uids[pid] and "CT" in study.modalities

    # re-run: FHIR PUTs overwrite with the same content, the PACS already holds every instance
    broken.unlink()
    junk.unlink()
    assert main(["load", str(cohort.root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "6 files, 0 loaded, 6 already present, 0 failed" in out
    for pid in cohort.patient_ids:
        assert observations(fhir_client, pid) == [f"{pid}-packyears", f"{pid}-smoking"]
        (series,) = source.search_series(cohort.study_uids[pid])
        assert len(source.search_instances(cohort.study_uids[pid], series.series_instance_uid)) == 3


@pytest.mark.usefixtures("stack_settings_env")
def test_ndjson_input_is_loaded_as_put_transactions(
        fhir_client: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tag = uuid.uuid4().hex[:10]
    ndjson = tmp_path / "cohort" / "fhir" / "ndjson"
    ndjson.mkdir(parents=True)
    patients = [{"resourceType": "Patient", "id": f"nd-{tag}-{i}", "gender": "male"} for i in range(60)]
    (ndjson / "Patient.000.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    assert main(["load", str(tmp_path / "cohort"), "--no-dicom", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 chunks, 2 loaded" in out and "60 resources" in out
    found = fhir_client.get("Patient", params={"_id": ",".join(p["id"] for p in patients), "_count": "100"}).json()
    assert len(found["entry"]) == 60
