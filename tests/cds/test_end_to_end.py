"""patient-view over a synthetic cohort (``risk synth``): FHIR prefetch from its bundles, imaging from its DICOM
folder (vendor TID 1500 SRs parsed by the real pipeline, imaging-feature cache, per-process imaging cache)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.assess import assess
from risk.cds.data import gather_snapshot, prefetch_source
from risk.cds.imaging import CachedImaging
from risk.cds.request import parse_hook_request
from risk.config import load_settings
from risk.deadline import Deadline
from tests.cds.conftest import BASE, TODAY
from tests.support.cds_client import ISSUER, CdsClient, JwksServer, JwtSigner, hook_request

KEYS = {"Patient": "patient", "Observation": "observations", "Condition": "conditions",
        "FamilyMemberHistory": "familyHistory", "ImagingStudy": "imagingStudies"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "c"
    subprocess.run([str(Path(sys.executable).parent / "risk"), "synth", "--out", str(out), "--patients", "6",
                    "--seed", "5", "--workers", "1", "--as-of", TODAY.isoformat(), "--quiet"], check=True)
    return out


def _prefetch(bundle: Path) -> tuple[str, dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = {k: [] for k in KEYS.values()}
    for entry in json.loads(bundle.read_text())["entry"]:
        key = KEYS.get(entry["resource"]["resourceType"])
        if key:
            grouped[key].append(entry["resource"])
    out: dict[str, Any] = {"patient": grouped.pop("patient")[0]}
    for key, items in grouped.items():
        out[key] = {"resourceType": "Bundle", "type": "searchset",
                    **({"entry": [{"resource": r} for r in items]} if items else {})}
    return out["patient"]["id"], out


@pytest.fixture
def client(cohort: Path, tmp_path: Path, jwks_server: JwksServer, signer: JwtSigner) -> Iterator[CdsClient]:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/e2e.db"}, public_base_url=BASE,
                             dicomweb={"file_dir": str(cohort / "dicom")},
                             cds={"issuers": [{"iss": ISSUER, "jwks_url": jwks_server.url}], "request_budget_s": 30})
    app = create_app(settings)
    app.state.cds.today = lambda: TODAY
    with TestClient(app, base_url=BASE) as http:
        yield CdsClient(http, BASE, signer)


@pytest.mark.slow
def test_cohort_patients_through_the_real_imaging_pipeline(cohort: Path, client: CdsClient,
                                                           schema: Callable[[str, Any], None]) -> None:
    service = client.http.app.state.cds  # type: ignore[attr-defined]
    assert isinstance(service.imaging, CachedImaging)
    graded = 0
    for bundle in sorted((cohort / "fhir" / "bundles").glob("*.json")):
        patient_id, prefetch = _prefetch(bundle)
        body = hook_request("patient-view", patient_id, prefetch=prefetch)
        for _attempt in range(2):  # the second call must come from the imaging cache
            response = client.call("lung-risk", body)
            assert response.status_code == 200, response.text
            schema("response", response.json())
            assert "could not be checked" not in response.text.lower()
        request = parse_hook_request(json.dumps(body).encode())
        source, fallback = prefetch_source(request, service.pool)
        snapshot, _ = asyncio.run(gather_snapshot(request, source, fallback, as_of=TODAY,
                                                  deadline=Deadline(30), imaging=service.imaging))
        assessment = assess(snapshot)
        if snapshot.nodule_tracks:
            assert {o.study_instance_uid for t in snapshot.nodule_tracks for o in t.observations} <= {
                s.study_instance_uid for s in snapshot.imaging_studies}
            graded += bool(assessment.nodule_categories) or any(
                "Lung-RADS" in a.model or "Fleischner" in a.model for a in assessment.abstentions)
    assert service.imaging.misses == 6 and service.imaging.hits >= 12
    assert graded >= 1  # at least one patient's SR nodules were graded by a guideline
