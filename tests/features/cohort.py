"""A small deterministic FHIR cohort that exercises every mapping rule (for the two-path cross-check).

Each patient gets a random mix of the shapes real EHR data comes in: unit variants, packs/day instead of
cigarettes/day, years-since-quit instead of a quit date, height + weight instead of BMI, ICD-10-CM
instead of SNOMED, conflicting smoking records, entered-in-error / preliminary / refuted resources,
values without units or dated after the as-of date, duplicates, several OMB races, family history in
first- and second-degree relatives, CT and MR studies with and without UIDs. Not a clinical model: the
realistic cohort is ``risk synth``; this one is built to hit the rules' corners.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from risk import codes

AS_OF = date(2025, 6, 30)
CAT = codes.OBSERVATION_CATEGORY


def _obs(rng: random.Random, pid: str, oid: str, code: codes.Code, when: str, **value: Any) -> dict[str, Any]:
    status = rng.choices(["final", "amended", "corrected", "preliminary", "entered-in-error"],
                         [80, 5, 5, 5, 5])[0]
    out: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": status,
        "category": [{"coding": [{"system": CAT, "code": "social-history"}]}],
        "code": {"coding": [code.coding()]}, "subject": {"reference": f"Patient/{pid}"},
    }
    shape = rng.random()
    if shape < 0.8:
        out["effectiveDateTime"] = when
    elif shape < 0.9:
        out["effectivePeriod"] = {"start": when[:10], "end": when}
    elif shape < 0.97:
        out["issued"] = when + "T10:00:00Z" if len(when) == 10 else when
    out.update(value)
    return out


def _day(rng: random.Random, start_year: int = 2005, end: date = date(2026, 3, 1)) -> date:
    first = date(start_year, 1, 1)
    return first + timedelta(days=rng.randrange((end - first).days))


def _when(rng: random.Random, day: date) -> str:
    r = rng.random()
    if r < 0.6:
        return day.isoformat()
    if r < 0.9:
        zone = rng.choice(["Z", "-05:00", "+01:00"])
        return f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00{zone}"
    if r < 0.95:
        return day.isoformat()[:7]
    return "not-a-date" if r < 0.97 else day.isoformat()


def _qty(value: float, unit: str | None, *, code: bool = True) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q["unit"] = unit
        if code:
            q["system"] = codes.UCUM
            q["code"] = unit
    return {"valueQuantity": q}


def patient_resources(i: int, rng: random.Random) -> list[dict[str, Any]]:
    pid = f"p{i:05d}"
    n = 0

    def oid() -> str:
        nonlocal n
        n += 1
        return f"{pid}-o{n}"

    birth = date(1935 + rng.randrange(50), 1 + rng.randrange(12), 1 + rng.randrange(28))
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid,
                               "identifier": [{"system": "urn:oid:1.2.3.4", "value": f"MRN{i:05d}",
                                               "type": {"coding": [{"system": codes.V2_0203, "code": "MR"}]}}],
                               "gender": rng.choice(["male", "female", "other", "unknown", "bogus"])}
    r = rng.random()
    patient["birthDate"] = (birth.isoformat() if r < 0.9 else birth.isoformat()[:4] if r < 0.95
                            else "2030-01-01" if r < 0.97 else "19xx")
    races = rng.sample([codes.OMB_WHITE, codes.OMB_BLACK, codes.OMB_ASIAN, codes.OMB_AIAN, codes.OMB_NHPI],
                       rng.choice([0, 1, 1, 1, 1, 2]))
    ext = []
    if races:
        ext.append({"url": codes.US_CORE_RACE_URL,
                    "extension": [{"url": "ombCategory", "valueCoding": c.coding()} for c in races]
                    + [{"url": "text", "valueString": "x"}]})
    if rng.random() < 0.7:
        eth = codes.OMB_HISPANIC if rng.random() < 0.2 else codes.OMB_NOT_HISPANIC
        ext.append({"url": codes.US_CORE_ETHNICITY_URL,
                    "extension": [{"url": "ombCategory", "valueCoding": eth.coding()}]})
    if ext:
        patient["extension"] = ext
    out: list[dict[str, Any]] = [patient]

    # Smoking status records (sometimes conflicting), intensity, duration, pack-years, quit.
    answers = [codes.CURRENT_EVERY_DAY_SMOKER, codes.FORMER_SMOKER, codes.NEVER_SMOKER, codes.SMOKER_STATUS_UNKNOWN,
               codes.UNKNOWN_IF_EVER_SMOKED, codes.CURRENT_HEAVY_SMOKER]
    status_codes = [codes.SMOKING_STATUS, codes.TOBACCO_USE_HISTORY]
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        answer = rng.choice(answers)
        concept = {"coding": [answer.coding()]}
        if rng.random() < 0.05:
            concept = {"coding": [{"system": codes.SNOMED, "code": "999999999"}]}
        if rng.random() < 0.1:
            concept = {"coding": [{"system": "http://example.org/local", "code": "S"}, answer.coding()]}
        o = _obs(rng, pid, oid(), rng.choice(status_codes), _when(rng, _day(rng)))
        if rng.random() > 0.03:
            o["valueCodeableConcept"] = concept
        out.append(o)
    if rng.random() < 0.7:
        if rng.random() < 0.7:
            unit = rng.choice(["/d", "{cigarettes}/d", None, "cigarettes/day", "per day"])
            out.append(_obs(rng, pid, oid(), codes.CIGARETTES_PER_DAY, _when(rng, _day(rng)),
                            **_qty(float(rng.choice([5, 10, 15, 20, 30, 40, 250])), unit, code=rng.random() < 0.7)))
        else:
            out.append(_obs(rng, pid, oid(), codes.CIGARETTE_PACKS_PER_DAY, _when(rng, _day(rng)),
                            **_qty(rng.choice([0.5, 1.0, 1.5, 2.0]), rng.choice(["{packs}/d", None]))))
        out.append(_obs(rng, pid, oid(), codes.SMOKING_DURATION_YEARS, _when(rng, _day(rng)),
                        **_qty(float(rng.randrange(1, 60)), rng.choice(["a", "a", "years", "mo", None]))))
    for _ in range(rng.choice([0, 1, 1, 2])):
        out.append(_obs(rng, pid, oid(), rng.choice([codes.PACK_YEARS, codes.PACK_YEARS_CALCULATED]),
                        _when(rng, _day(rng)),
                        **_qty(round(rng.uniform(0, 80), 1), rng.choice(["{pack-years}", None, "pack-years", "kg"]))))
    if rng.random() < 0.4:
        if rng.random() < 0.5:
            out.append(_obs(rng, pid, oid(), codes.SMOKING_QUIT_DATE, _when(rng, _day(rng)),
                            valueDateTime=_when(rng, _day(rng, 1990))))
        else:
            out.append(_obs(rng, pid, oid(), codes.YEARS_SINCE_QUIT, _when(rng, _day(rng)),
                            **_qty(round(rng.uniform(0, 30), 2), "a")))

    # BMI, or height + weight in various units.
    if rng.random() < 0.5:
        out.append(_obs(rng, pid, oid(), codes.BMI, _when(rng, _day(rng)),
                        **_qty(round(rng.uniform(16, 45), 1), rng.choice(["kg/m2", "kg/m^2", None]))))
    if rng.random() < 0.6:
        kg = rng.uniform(45, 140)
        unit, factor = rng.choice([("kg", 1.0), ("[lb_av]", 1 / 0.45359237), ("g", 1000.0), ("stone", 1.0)])
        out.append(_obs(rng, pid, oid(), codes.BODY_WEIGHT, _when(rng, _day(rng)), **_qty(round(kg * factor, 1), unit)))
        cm = rng.uniform(145, 200)
        unit, factor = rng.choice([("cm", 1.0), ("[in_i]", 1 / 2.54), ("m", 0.01)])
        out.append(_obs(rng, pid, oid(), codes.BODY_HEIGHT, _when(rng, _day(rng)), **_qty(round(cm * factor, 2), unit)))
    if rng.random() < 0.5:
        level = str(rng.randrange(1, 8))
        out.append(_obs(rng, pid, oid(), codes.HIGHEST_EDUCATION, _when(rng, _day(rng)),
                        valueCodeableConcept={"coding": [{"system": codes.PLCO_EDUCATION_LEVEL_SYSTEM,
                                                          "code": level}]}))

    # Labs, with unit variants, unknown units, missing values and duplicates.
    labs = [(codes.WBC, 7.0, [("10*3/uL", 1.0), ("10*9/L", 1.0), ("/uL", 1000.0)]),
            (codes.HEMOGLOBIN, 14.0, [("g/dL", 1.0), ("g/L", 10.0), ("mmol/L", 1 / 1.61145)]),
            (codes.CRP, 4.0, [("mg/L", 1.0), ("mg/dL", 0.1), ("furlong", 1.0)]),
            (codes.ALBUMIN, 4.0, [("g/dL", 1.0), ("g/L", 10.0)]),
            (codes.FEV1, 2.8, [("L", 1.0), ("mL", 1000.0)]),
            (codes.FEV1_FVC, 70.0, [("%", 1.0), ("1", 0.01)])]
    for code, mean, units in labs:
        for _ in range(rng.choice([0, 1, 2, 3])):
            unit, factor = rng.choice(units)
            o = _obs(rng, pid, oid(), code, _when(rng, _day(rng, 2015)),
                     **_qty(round(abs(rng.gauss(mean, mean / 4)) * factor, 3), unit))
            if rng.random() < 0.05:
                del o["valueQuantity"]
                o["dataAbsentReason"] = {"text": "not performed"}
            out.append(o)
            if rng.random() < 0.1:
                dup = dict(o)
                dup["id"] = oid()
                out.append(dup)

    # Conditions.
    pool = [(codes.SNOMED, codes.COPD.code), (codes.ICD10CM, "J44.9"), (codes.ICD10CM, "J441"),
            (codes.SNOMED, codes.EMPHYSEMA.code), (codes.ICD10CM, "J43.9"), (codes.SNOMED, codes.LUNG_CANCER.code),
            (codes.ICD10CM, "C34.11"), (codes.ICD10CM, "Z85.118"), (codes.ICD10CM, "C50.911"),
            (codes.ICD10CM, "Z85.3"), (codes.SNOMED, codes.MALIGNANT_NEOPLASM.code), (codes.ICD10CM, "D84.9"),
            (codes.ICD10CM, "I10"), (codes.SNOMED, "38341003"), (codes.ICD10CM, "Z80.1")]
    for k in range(rng.choice([0, 0, 1, 2, 3])):
        system, value = rng.choice(pool)
        c: dict[str, Any] = {"resourceType": "Condition", "id": f"{pid}-c{k}",
                             "subject": {"reference": f"Patient/{pid}"},
                             "code": {"coding": [{"system": system, "code": value}]},
                             "clinicalStatus": {"coding": [{"system": codes.CONDITION_CLINICAL,
                                                            "code": rng.choice(["active", "resolved", "inactive"])}]}}
        v = rng.random()
        if v < 0.1:
            c["verificationStatus"] = {"coding": [{"system": codes.CONDITION_VERIFICATION, "code": "refuted"}]}
        elif v < 0.2:
            c["verificationStatus"] = {"coding": [{"system": codes.CONDITION_VERIFICATION, "code": "entered-in-error"}]}
        elif v < 0.5:
            c["verificationStatus"] = {"coding": [{"system": codes.CONDITION_VERIFICATION, "code": "confirmed"}]}
        d = rng.random()
        if d < 0.6:
            c["onsetDateTime"] = _when(rng, _day(rng, 1990))
        elif d < 0.7:
            c["onsetPeriod"] = {"start": _when(rng, _day(rng, 1990))}
        elif d < 0.9:
            c["recordedDate"] = _when(rng, _day(rng, 1990))
        out.append(c)

    # Family history.
    for k in range(rng.choice([0, 0, 1, 2])):
        rel = rng.choice(["FTH", "MTH", "SIS", "BRO", "GRFTH", "AUNT", "SON"])
        cond = rng.choice([codes.LUNG_CANCER.coding(), {"system": codes.ICD10CM, "code": "C34.90"},
                           {"system": codes.SNOMED, "code": "38341003"}])
        f: dict[str, Any] = {"resourceType": "FamilyMemberHistory", "id": f"{pid}-f{k}",
                             "status": rng.choice(["completed", "completed", "partial", "entered-in-error"]),
                             "patient": {"reference": f"Patient/{pid}"},
                             "relationship": {"coding": [{"system": codes.V3_ROLE_CODE, "code": rel}]},
                             "condition": [{"code": {"coding": [cond]}, "onsetAge": {"value": 60, "unit": "a"}}]}
        if rng.random() < 0.3:
            f["date"] = _when(rng, _day(rng))
        out.append(f)

    # Imaging studies (an Endpoint is shared by the cohort).
    for k in range(rng.choice([0, 0, 1, 2, 3])):
        uid = f"1.2.826.0.1.3680043.10.1.{i}.{k}"
        study: dict[str, Any] = {"resourceType": "ImagingStudy", "id": f"{pid}-s{k}",
                                 "subject": {"reference": f"Patient/{pid}"},
                                 "status": rng.choice(["available", "available", "cancelled", "entered-in-error"]),
                                 "endpoint": [{"reference": "Endpoint/pacs"}]}
        if rng.random() < 0.95:
            study["identifier"] = [{"system": codes.DICOM_UID, "value": f"urn:oid:{uid}"}]
        modality = rng.choice(["CT", "CT", "MR"])
        if rng.random() < 0.5:
            study["series"] = [{"uid": uid + ".1", "modality": {"system": codes.DCM, "code": modality}}]
        else:
            study["modality"] = [{"system": codes.DCM, "code": modality}]
        if rng.random() < 0.9:
            study["started"] = _when(rng, _day(rng, 2015))
        out.append(study)
    return out


ENDPOINT = {"resourceType": "Endpoint", "id": "pacs", "status": "active",
            "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "dicom-wado-rs"},
            "payloadType": [{"text": "DICOM"}], "address": "http://127.0.0.1:18042/dicom-web"}


def cohort(n: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    for i in range(n):
        yield patient_resources(i, rng)


def write_cohort(root: Path, n: int, seed: int = 7, *, observation_files: int = 2) -> list[str]:
    """Write ``root/bundles/<pid>.json`` (transaction Bundles) and ``root/ndjson/<Type>[.NNN].ndjson``.

    Observations are split over ``observation_files`` files, alternating per resource, so one patient's
    Observations sit in several files (the cross-file reduction is exercised). Returns the patient ids.
    """
    (root / "bundles").mkdir(parents=True, exist_ok=True)
    (root / "ndjson").mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[bytes]] = {}
    ids = []
    for resources in cohort(n, seed):
        pid = resources[0]["id"]
        ids.append(pid)
        entries = [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        (root / "bundles" / f"{pid}.json").write_bytes(orjson.dumps(bundle))
        for r in resources:
            by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
    (root / "bundles" / "endpoint.json").write_bytes(orjson.dumps(ENDPOINT))
    for rtype, lines in by_type.items():
        if rtype == "Observation" and observation_files > 1:
            for k in range(observation_files):
                part = b"\n".join(lines[k::observation_files]) + b"\n"
                (root / "ndjson" / f"Observation.{k:03d}.ndjson").write_bytes(part)
        else:
            (root / "ndjson" / f"{rtype}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return ids
