"""Small builders for FHIR JSON in tests (plain dicts, as ingestion reads them)."""

from __future__ import annotations

from itertools import count
from typing import Any

from risk import codes
from risk.codes import Code

PID = "pat-1"
_ids = count(1)


def observation(code: Code, when: str | None = "2024-01-10", *, status: str = "final", pid: str = PID,
                oid: str | None = None, **value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Observation", "id": oid or f"o{next(_ids)}", "status": status,
                           "code": {"coding": [code.coding()]}, "subject": {"reference": f"Patient/{pid}"}}
    if when is not None:
        out["effectiveDateTime"] = when
    out.update(value)
    return out


def quantity(value: Any, unit: str | None = None, *, ucum: bool = True) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q["unit"] = unit
        if ucum:
            q.update(system=codes.UCUM, code=unit)
    return {"valueQuantity": q}


def answer(code: Code) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [code.coding()]}}


def smoking_status(code: Code, when: str = "2024-01-10", **kw: Any) -> dict[str, Any]:
    return observation(codes.SMOKING_STATUS, when, **answer(code), **kw)


def condition(system: str, code: str, *, onset: str | None = None, clinical: str | None = "active",
              verification: str | None = None, pid: str = PID, cid: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Condition", "id": cid or f"c{next(_ids)}",
                           "subject": {"reference": f"Patient/{pid}"},
                           "code": {"coding": [{"system": system, "code": code}]}}
    if clinical:
        out["clinicalStatus"] = {"coding": [{"system": codes.CONDITION_CLINICAL, "code": clinical}]}
    if verification:
        out["verificationStatus"] = {"coding": [{"system": codes.CONDITION_VERIFICATION, "code": verification}]}
    if onset:
        out["onsetDateTime"] = onset
    out.update(extra)
    return out


def patient(pid: str = PID, *, birth: str | None = "1960-05-20", gender: str = "female",
            races: tuple[Code, ...] = (), ethnicity: Code | None = None, mrn: str | None = "MRN-1") -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": gender}
    if birth is not None:
        out["birthDate"] = birth
    if mrn is not None:
        out["identifier"] = [{"system": "urn:oid:1.2.3", "value": mrn,
                              "type": {"coding": [{"system": codes.V2_0203, "code": "MR"}]}},
                             {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-99-9999"}]
    ext = []
    if races:
        ext.append({"url": codes.US_CORE_RACE_URL,
                    "extension": [{"url": "ombCategory", "valueCoding": r.coding()} for r in races]})
    if ethnicity is not None:
        ext.append({"url": codes.US_CORE_ETHNICITY_URL,
                    "extension": [{"url": "ombCategory", "valueCoding": ethnicity.coding()}]})
    if ext:
        out["extension"] = ext
    return out


def imaging_study(uid: str | None = "1.2.3.4.5", *, started: str | None = "2024-03-01", modality: str = "CT",
                  status: str = "available", endpoint: str | None = "Endpoint/pacs", pid: str = PID,
                  sid: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "ImagingStudy", "id": sid or f"s{next(_ids)}", "status": status,
                           "subject": {"reference": f"Patient/{pid}"},
                           "series": [{"uid": "1.2.3.4.5.1", "modality": {"system": codes.DCM, "code": modality}}]}
    if uid is not None:
        out["identifier"] = [{"system": codes.DICOM_UID, "value": f"urn:oid:{uid}"}]
    if started is not None:
        out["started"] = started
    if endpoint is not None:
        out["endpoint"] = [{"reference": endpoint}]
    out.update(extra)
    return out


def endpoint(eid: str = "pacs", address: str = "http://pacs.example.org/dicom-web",
             connection: str = "dicom-wado-rs") -> dict[str, Any]:
    return {"resourceType": "Endpoint", "id": eid, "status": "active", "address": address,
            "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": connection}}


def family_history(relationship: str, condition_code: Code = codes.LUNG_CANCER, *, status: str = "completed",
                   pid: str = PID, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "FamilyMemberHistory", "id": f"f{next(_ids)}", "status": status,
                           "patient": {"reference": f"Patient/{pid}"},
                           "relationship": {"coding": [{"system": codes.V3_ROLE_CODE, "code": relationship}]},
                           "condition": [{"code": {"coding": [condition_code.coding()]},
                                          "onsetAge": {"value": 64, "unit": "a", "system": codes.UCUM, "code": "a"}}]}
    out.update(extra)
    return out
