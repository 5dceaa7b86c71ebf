"""FHIR R4 JSON for one test patient, as an EHR would prefetch it (plain dicts, codes from risk.codes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from risk import codes


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}


def observation(oid: str, patient_id: str, code: codes.Code, day: date, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [code.coding()]}, "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": day.isoformat(), **value}


def patient(patient_id: str, birth: date, gender: str = "male", mrn: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": patient_id, "birthDate": birth.isoformat(),
                           "gender": gender}
    if mrn:
        out["identifier"] = [{"type": {"coding": [{"system": codes.V2_0203, "code": "MR"}]},
                              "system": "urn:test:mrn", "value": mrn}]
    return out


def imaging_study(sid: str, patient_id: str, uid: str, started: date,
                  description: str = "CT chest low dose screening") -> dict[str, Any]:
    return {"resourceType": "ImagingStudy", "id": sid, "status": "available",
            "identifier": [{"system": codes.DICOM_UID, "value": f"urn:oid:{uid}"}],
            "modality": [{"system": codes.DCM, "code": "CT"}], "subject": {"reference": f"Patient/{patient_id}"},
            "started": started.isoformat(), "description": description}


def condition(cid: str, patient_id: str, code: codes.Code) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{patient_id}"},
            "code": {"coding": [code.coding()]},
            "clinicalStatus": {"coding": [{"system": codes.CONDITION_CLINICAL, "code": "active"}]}}


def searchset(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    entries = [{"fullUrl": f"urn:test:{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in resources]
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if entries:
        out["entry"] = entries
    return out


def smoker_resources(patient_id: str, as_of: date, *, age: int = 65,
                     status: codes.Code = codes.CURRENT_EVERY_DAY_SMOKER, pack_years: float | None = 40,
                     cigarettes_per_day: float | None = 20, smoking_years: float | None = 40,
                     quit_date: date | None = None, recorded: date | None = None,
                     bmi: float | None = 27.0) -> dict[str, list[dict[str, Any]]]:
    """Resources per prefetch key for a smoker of ``age`` on ``as_of``."""
    day = recorded or as_of - timedelta(days=40)
    birth = date(as_of.year - age, 1, 15) if (as_of.month, as_of.day) >= (1, 15) else date(as_of.year - age - 1, 1, 15)
    obs = [observation(f"{patient_id}-smk", patient_id, codes.SMOKING_STATUS, day,
                       valueCodeableConcept={"coding": [status.coding()]})]
    if pack_years is not None:
        obs.append(observation(f"{patient_id}-py", patient_id, codes.PACK_YEARS, day,
                               valueQuantity=_quantity(pack_years, codes.UNIT_PACK_YEARS)))
    if cigarettes_per_day is not None:
        obs.append(observation(f"{patient_id}-cpd", patient_id, codes.CIGARETTES_PER_DAY, day,
                               valueQuantity=_quantity(cigarettes_per_day, codes.UNIT_PER_DAY)))
    if smoking_years is not None:
        obs.append(observation(f"{patient_id}-dur", patient_id, codes.SMOKING_DURATION_YEARS, day,
                               valueQuantity=_quantity(smoking_years, codes.UNIT_YEAR)))
    if quit_date is not None:
        obs.append(observation(f"{patient_id}-quit", patient_id, codes.SMOKING_QUIT_DATE, day,
                               valueDateTime=quit_date.isoformat()))
    if bmi is not None:
        obs.append(observation(f"{patient_id}-bmi", patient_id, codes.BMI, day,
                               valueQuantity=_quantity(bmi, codes.UNIT_KG_M2)))
    return {"patient": [patient(patient_id, birth, mrn=f"MRN-{patient_id}")], "observations": obs,
            "conditions": [], "familyHistory": [], "imagingStudies": []}


def prefetch(resources: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Pack resources per key as an EHR prefetch: the read key a resource, search keys searchset Bundles."""
    out: dict[str, Any] = {}
    for key, items in resources.items():
        if key == "patient":
            out[key] = items[0] if items else None
        else:
            out[key] = searchset(items)
    return out
