"""A tiny cohort directory in ``risk synth``'s layout, built in the test: a transaction Bundle per patient (PUT,
deterministic ids) and a small synthetic CT series per patient (pydicom, real pixel data). Ids carry a ``tag`` so
runs against the shared stack never see each other's data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from risk import codes
from tests.support.dicom_factory import make_ct_series, write


@dataclass(frozen=True)
class TinyCohort:
    root: Path
    patient_ids: tuple[str, ...]
    study_uids: dict[str, str]
    """PatientID -> StudyInstanceUID."""
    dicom_files: tuple[Path, ...]
    n_resources: int


def patient_resources(pid: str, study_uid: str) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1958-03-01",
         "identifier": [{"system": "urn:lungrisk:test:mrn", "value": pid}]},
        {"resourceType": "Observation", "id": f"{pid}-smoking", "status": "final",
         "code": codes.SMOKING_STATUS.concept(), "subject": subject, "effectiveDateTime": "2025-01-10",
         "valueCodeableConcept": codes.FORMER_SMOKER.concept()},
        {"resourceType": "Observation", "id": f"{pid}-packyears", "status": "final",
         "code": codes.PACK_YEARS.concept(), "subject": subject, "effectiveDateTime": "2025-01-10",
         "valueQuantity": {"value": 32, "unit": "{PackYears}", "system": codes.UCUM, "code": "{PackYears}"}},
        {"resourceType": "ImagingStudy", "id": f"{pid}-ct-1", "status": "available", "subject": subject,
         "started": "2025-01-10", "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
         "modality": [{"system": codes.DCM, "code": "CT"}]},
    ]


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def write_tiny_cohort(root: Path, tag: str, *, n_patients: int = 2, n_slices: int = 4) -> TinyCohort:
    (root / "fhir" / "bundles").mkdir(parents=True)
    ids: list[str] = []
    studies: dict[str, str] = {}
    datasets: list[Dataset] = []
    n_resources = 0
    for i in range(n_patients):
        pid = f"it-{tag}-{i + 1}"
        ct = make_ct_series(patient_id=pid, study_date=date(2025, 1, 10), n_slices=n_slices, size=16)
        resources = patient_resources(pid, str(ct[0].StudyInstanceUID))
        (root / "fhir" / "bundles" / f"{pid}.json").write_text(json.dumps(transaction(resources)))
        ids.append(pid)
        studies[pid] = str(ct[0].StudyInstanceUID)
        datasets.extend(ct)
        n_resources += len(resources)
    files = write(root / "dicom", datasets)
    (root / "manifest.json").write_text(json.dumps({"seed": 0, "n_patients": n_patients, "site": "test",
                                                    "generator_version": "tests.loading.tiny_cohort"}))
    return TinyCohort(root, tuple(ids), studies, tuple(files), n_resources)
