"""Tiny hand-written Bulk exports (NDJSON folders) for closed-loop and worklist tests.

Each patient is written the way risk.synth writes FHIR (US Core smoking status and quantities, ImagingStudy with a
DICOM UID, CPT-coded ServiceRequests), with only what a scenario needs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from risk import codes

SITE_SYSTEM = "https://{site}.lungrisk.example.org/fhir/sid/mrn"


def _cc(code: codes.Code) -> dict[str, Any]:
    return {"coding": [{"system": code.system, "code": code.code, "display": code.display}]}


@dataclass
class Export:
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.resources[resource["resourceType"]].append(resource)
        return resource

    def patient(self, pid: str, *, birth: date, site: str = "site-a", sex: str = "male", name: str | None = None,
                phone: str | None = None) -> None:
        r: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": sex, "birthDate": birth.isoformat(),
                             "identifier": [{"type": _cc(codes.IDENTIFIER_TYPE_MRN),
                                             "system": SITE_SYSTEM.format(site=site), "value": f"MRN-{pid}"}],
                             "name": [{"text": name or f"Test {pid}"}]}
        if phone:
            r["telecom"] = [{"system": "phone", "value": phone}]
        self.add(r)

    def smoking(self, pid: str, status: str, *, on: date, pack_years: float | None = None,
                cpd: float | None = None, years: float | None = None, quit_on: date | None = None) -> None:
        answer = {"current": codes.CURRENT_EVERY_DAY_SMOKER, "former": codes.FORMER_SMOKER,
                  "never": codes.NEVER_SMOKER}[status]
        subject = {"reference": f"Patient/{pid}"}
        n = len(self.resources["Observation"])
        self.add({"resourceType": "Observation", "id": f"{pid}-smk-{n}", "status": "final",
                  "code": _cc(codes.SMOKING_STATUS), "subject": subject, "effectiveDateTime": on.isoformat(),
                  "valueCodeableConcept": _cc(answer)})
        for code, value, unit in ((codes.PACK_YEARS, pack_years, codes.UNIT_PACK_YEARS),
                                  (codes.CIGARETTES_PER_DAY, cpd, codes.UNIT_PER_DAY),
                                  (codes.SMOKING_DURATION_YEARS, years, codes.UNIT_YEAR)):
            if value is not None:
                self.add({"resourceType": "Observation", "id": f"{pid}-{code.code}-{n}", "status": "final",
                          "code": _cc(code), "subject": subject, "effectiveDateTime": on.isoformat(),
                          "valueQuantity": {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}})
        if quit_on is not None:
            self.add({"resourceType": "Observation", "id": f"{pid}-quit-{n}", "status": "final",
                      "code": _cc(codes.SMOKING_QUIT_DATE), "subject": subject, "effectiveDateTime": on.isoformat(),
                      "valueDateTime": quit_on.isoformat()})

    def study(self, pid: str, sid: str, on: date, *, order_id: str | None = None,
              description: str = "LDCT chest screening", with_sr: bool = True) -> str:
        uid = f"2.25.{abs(hash((pid, sid))) % 10**30}"
        series = [{"uid": uid + ".1", "modality": {"system": codes.DCM, "code": "CT"}}]
        if with_sr:
            series.append({"uid": uid + ".2", "modality": {"system": codes.DCM, "code": "SR"}})
        r: dict[str, Any] = {"resourceType": "ImagingStudy", "id": sid, "status": "available",
                             "identifier": [{"system": codes.DICOM_UID, "value": f"urn:oid:{uid}"}],
                             "subject": {"reference": f"Patient/{pid}"}, "started": f"{on.isoformat()}T10:00:00Z",
                             "description": description, "series": series}
        if order_id:
            r["basedOn"] = [{"reference": f"ServiceRequest/{order_id}"}]
        self.add(r)
        return uid

    def order(self, pid: str, oid: str, *, authored: date, status: str = "active", occurrence: date | None = None,
              code: codes.Code = codes.CPT_LDCT_SCREENING) -> None:
        r: dict[str, Any] = {"resourceType": "ServiceRequest", "id": oid, "status": status, "intent": "order",
                             "code": _cc(code), "subject": {"reference": f"Patient/{pid}"},
                             "authoredOn": authored.isoformat()}
        if occurrence is not None:
            r["occurrenceDateTime"] = occurrence.isoformat()
        self.add(r)

    def appointment(self, aid: str, order_id: str, start: date, status: str = "booked") -> None:
        self.add({"resourceType": "Appointment", "id": aid, "status": status, "start": f"{start.isoformat()}T09:00:00Z",
                  "basedOn": [{"reference": f"ServiceRequest/{order_id}"}]})

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.ndjson"):
            old.unlink()
        for kind, rs in self.resources.items():
            (folder / f"{kind}.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rs))
        return folder
