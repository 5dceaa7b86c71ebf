"""Benchmark: one patient's PatientSnapshot from a full CDS Hooks prefetch, as a ratio to orjson parsing it.

The prefetch is the one a CDS client sends for the service's templates (risk.sources.fhir.PREFETCH_TEMPLATES):
Patient, a searchset of Observations (smoking, BMI, education and about 50 laboratory results over the years),
Conditions, FamilyMemberHistory and ImagingStudies with their Endpoint: ~45 KB, close to the 43 KB bundle of
reference/performance.md §2. Measured, per call, in one warm process:

- floor: ``orjson.loads`` of the prefetch bytes;
- snapshot: ``orjson.loads`` + PrefetchFhirSource + build_snapshot (the whole ingestion path, no imaging);
- for contrast: fhir.resources R4B validation of the same resources (what the hot path avoids).

Prints median and p99 (µs) and their ratios to the orjson median. Usage:
    .venv/bin/python bench/bench_snapshot.py [--seconds 1.0] [--reps 7]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risk import codes
from risk.deadline import Deadline
from risk.snapshots import build_snapshot
from risk.sources.fhir import PREFETCH_TEMPLATES
from risk.sources.fhir_prefetch import PrefetchFhirSource

AS_OF = date(2025, 6, 30)
PID = "bench-patient"
CAT = codes.OBSERVATION_CATEGORY


def _obs(oid: str, code: codes.Code, when: str, category: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "meta": {"lastUpdated": "2025-03-01T12:00:00Z"},
            "status": "final", "category": [{"coding": [{"system": CAT, "code": category}]}],
            "code": {"coding": [code.coding()], "text": code.display}, "subject": {"reference": f"Patient/{PID}"},
            "effectiveDateTime": when, "issued": when + "T19:00:00.000+00:00", **value}


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}}


def prefetch() -> dict[str, Any]:
    rng = random.Random(7)
    patient = {"resourceType": "Patient", "id": PID, "meta": {"versionId": "3", "lastUpdated": "2024-03-01T12:00:00Z"},
               "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345678",
                               "type": {"coding": [{"system": codes.V2_0203, "code": "MR"}]}}],
               "active": True, "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
               "gender": "female", "birthDate": "1957-04-12",
               "extension": [{"url": codes.US_CORE_RACE_URL,
                              "extension": [{"url": "ombCategory", "valueCoding": codes.OMB_WHITE.coding()}]},
                             {"url": codes.US_CORE_ETHNICITY_URL,
                              "extension": [{"url": "ombCategory", "valueCoding": codes.OMB_NOT_HISPANIC.coding()}]}],
               "address": [{"use": "home", "line": ["1 Main St"], "city": "Springfield", "state": "IL"}]}
    obs = [
        _obs("smk-1", codes.SMOKING_STATUS, "2019-05-01", "social-history",
             valueCodeableConcept={"coding": [codes.CURRENT_EVERY_DAY_SMOKER.coding()]}),
        _obs("smk-2", codes.SMOKING_STATUS, "2024-05-01", "social-history",
             valueCodeableConcept={"coding": [codes.FORMER_SMOKER.coding()]}),
        _obs("py-1", codes.PACK_YEARS, "2024-05-01", "social-history", **_qty(32, "{pack-years}")),
        _obs("cpd-1", codes.CIGARETTES_PER_DAY, "2024-05-01", "social-history", **_qty(20, "/d")),
        _obs("dur-1", codes.SMOKING_DURATION_YEARS, "2024-05-01", "social-history", **_qty(32, "a")),
        _obs("quit-1", codes.SMOKING_QUIT_DATE, "2024-05-01", "social-history", valueDateTime="2021-01-15"),
        _obs("bmi-1", codes.BMI, "2024-05-01", "vital-signs", **_qty(27.4, "kg/m2")),
        _obs("edu-1", codes.HIGHEST_EDUCATION, "2024-05-01", "social-history",
             valueCodeableConcept={"coding": [codes.PLCO_EDUCATION_LEVELS["4"].coding()]}),
    ]
    labs = [(codes.WBC, 7.0, "10*3/uL"), (codes.HEMOGLOBIN, 13.5, "g/dL"), (codes.PLATELETS, 250, "10*3/uL"),
            (codes.NEUTROPHILS, 4.2, "10*3/uL"), (codes.LYMPHOCYTES, 1.9, "10*3/uL"), (codes.CRP, 3.1, "mg/L"),
            (codes.ALBUMIN, 41.0, "g/L"), (codes.FEV1, 2.6, "L"), (codes.FEV1_FVC, 66.0, "%")]
    n = 0
    for year in range(2019, 2025):
        for code, mean, unit in labs:
            if code in (codes.FEV1, codes.FEV1_FVC) and year % 2:
                continue
            n += 1
            obs.append(_obs(f"lab-{n}", code, f"{year}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}", "laboratory",
                            **_qty(round(mean * rng.uniform(0.8, 1.2), 2), unit)))
    conditions = [{"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/{PID}"},
                   "clinicalStatus": {"coding": [{"system": codes.CONDITION_CLINICAL, "code": "active"}]},
                   "verificationStatus": {"coding": [{"system": codes.CONDITION_VERIFICATION, "code": "confirmed"}]},
                   "category": [{"coding": [{"system": codes.CONDITION_CATEGORY, "code": "problem-list-item"}]}],
                   "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": f"20{10 + i}-03-01"}
                  for i, (system, code) in enumerate([(codes.SNOMED, codes.COPD.code), (codes.ICD10CM, "I10"),
                                                      (codes.ICD10CM, "E11.9"), (codes.SNOMED, "195967001"),
                                                      (codes.ICD10CM, "C50.911"), (codes.ICD10CM, "K21.9"),
                                                      (codes.ICD10CM, "M17.11"), (codes.ICD10CM, "E78.5"),
                                                      (codes.ICD10CM, "J43.9"), (codes.ICD10CM, "Z87.891")])]
    family = [{"resourceType": "FamilyMemberHistory", "id": "fmh-1", "status": "completed",
               "patient": {"reference": f"Patient/{PID}"},
               "relationship": {"coding": [{"system": codes.V3_ROLE_CODE, "code": "FTH"}]},
               "condition": [{"code": {"coding": [codes.LUNG_CANCER.coding()]},
                              "onsetAge": {"value": 67, "unit": "a"}}]}]
    endpoint = {"resourceType": "Endpoint", "id": "pacs", "status": "active", "address": "https://pacs/dicom-web",
                "payloadType": [{"text": "DICOM"}],
                "connectionType": {"system": codes.ENDPOINT_CONNECTION_TYPE, "code": "dicom-wado-rs"}}
    studies = [{"resourceType": "ImagingStudy", "id": f"ct-{y}", "status": "available",
                "subject": {"reference": f"Patient/{PID}"}, "started": f"{y}-06-01T08:10:00Z",
                "identifier": [{"use": "official", "system": codes.DICOM_UID, "value": f"urn:oid:1.2.840.99.{y}"}],
                "endpoint": [{"reference": "Endpoint/pacs"}],
                "series": [{"uid": f"1.2.840.99.{y}.1", "modality": {"system": codes.DCM, "code": "CT"}}]}
               for y in (2022, 2023, 2024)]

    def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
                "entry": [{"fullUrl": f"https://ehr/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                           "search": {"mode": "match"}} for r in resources]}

    return {"patient": patient, "observations": bundle(obs), "conditions": bundle(conditions),
            "familyHistory": bundle(family), "imagingStudies": bundle([*studies, endpoint])}


def measure(fn: Callable[[], object], seconds: float, reps: int) -> tuple[list[float], list[float]]:
    """Per-call wall and CPU times (µs) of ``reps`` × ~``seconds`` back-to-back calls, each call timed.

    The CPU time (this thread's) is the steadier figure on a shared, noisy machine; the wall time includes
    waiting for a core.
    """
    fn()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(reps):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t, c = time.perf_counter_ns(), time.thread_time_ns()
            fn()
            cpu.append((time.thread_time_ns() - c) / 1000)
            wall.append((time.perf_counter_ns() - t) / 1000)
    return wall, cpu


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    raw = orjson.dumps(prefetch())
    context = {"context.patientId": PID}

    def snapshot() -> object:
        source = PrefetchFhirSource(orjson.loads(raw), context, templates=PREFETCH_TEMPLATES)
        return build_snapshot(source, PID, as_of=AS_OF, deadline=Deadline(5))

    snap = snapshot()
    assert snap.smoking is not None and snap.smoking.pack_years == 32.0 and len(snap.labs) > 40  # type: ignore[attr-defined]
    assert snap.state_of("fhir").value == "ok" and not snap.has_errors  # type: ignore[attr-defined]

    gc.collect()
    floor_wall, floor_cpu = measure(lambda: orjson.loads(raw), args.seconds, args.reps)
    full_wall, full_cpu = measure(snapshot, args.seconds, args.reps)
    base_wall, base_cpu = statistics.median(floor_wall), statistics.median(floor_cpu)
    body = orjson.loads(raw)
    count = sum(len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1 for v in body.values())
    print(f"prefetch: {len(raw):,} bytes, {count} resources; {len(snap.labs)} lab results in the snapshot")  # type: ignore[attr-defined]
    print(f"{'path':<46} {'wall median':>11} {'wall p99':>9} {'CPU median':>10} {'CPU p99':>8}   "
          f"ratios to orjson (wall med / wall p99 / CPU med / CPU p99)")
    for name, wall, cpu in (("floor: orjson.loads", floor_wall, floor_cpu),
                            ("snapshot: loads + prefetch + build_snapshot", full_wall, full_cpu)):
        print(f"{name:<46} {statistics.median(wall):>9.1f}µs {p99(wall):>7.1f}µs {statistics.median(cpu):>8.1f}µs "
              f"{p99(cpu):>6.1f}µs   {statistics.median(wall) / base_wall:.2f} / {p99(wall) / base_wall:.2f} / "
              f"{statistics.median(cpu) / base_cpu:.2f} / {p99(cpu) / base_cpu:.2f}")
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        return
    bundles = [v for v in body.values() if v.get("resourceType") == "Bundle"]

    def validate() -> None:
        for b in bundles:
            Bundle.model_validate(b)

    contrast_wall, contrast_cpu = measure(validate, min(args.seconds, 0.5), 3)
    print(f"{'contrast: fhir.resources R4B validation':<46} {statistics.median(contrast_wall):>9.1f}µs "
          f"{p99(contrast_wall):>7.1f}µs {statistics.median(contrast_cpu):>8.1f}µs {p99(contrast_cpu):>6.1f}µs   "
          f"{statistics.median(contrast_wall) / base_wall:.2f} / - / {statistics.median(contrast_cpu) / base_cpu:.2f}")


if __name__ == "__main__":
    main()
