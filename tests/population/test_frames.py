"""risk.population.frames: the Patient columns of the worklist; references read as the one-patient path reads them."""

from __future__ import annotations

from datetime import date

import polars as pl

from risk.extract.fhirjson import reference_id
from risk.extract.patient import MRN_TYPE_CODE
from risk.features.bulk import patient_features
from risk.population.frames import PATIENT_EXTRA_DTYPE, appointment_frame, patient_frame

REFERENCES = ["ServiceRequest/o1", "https://ehr.example.org/fhir/ServiceRequest/o2",
              "ServiceRequest/o3/_history/7", "https://x/fhir/ServiceRequest/o4/_history/", "xServiceRequest/o5",
              "Patient/p1", "ServiceRequest/", "ServiceRequest/o6/", "ServiceRequest/a/b", "", "servicerequest/o7"]


def test_based_on_ids_are_reference_id() -> None:
    frame = pl.DataFrame({"id": ["a1"], "status": ["booked"], "start": ["2026-01-02"],
                          "basedOn": [[{"reference": r} for r in REFERENCES]]})
    got = appointment_frame(frame.lazy(), date(2026, 6, 30)).collect()["order_id"].to_list()
    want = [i for r in REFERENCES if (i := reference_id({"reference": r}, "ServiceRequest")) is not None]
    assert got == want == ["o1", "o2", "o3", "o4"]


def test_patient_frame_beside_the_features() -> None:
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": MRN_TYPE_CODE}]}
    rows = [
        {"id": "p1", "gender": "female", "birthDate": "1960-03",
         "identifier": [{"system": "urn:other", "value": "X1"}, {"system": "https://a.example.org/mrn",
                                                                  "value": "M1", "type": mr}],
         "name": [{"family": "Doe", "given": ["Jane", "Q"]}], "telecom": [{"system": "email", "value": "j@x"},
                                                                        {"system": "phone", "value": "555"}]},
        {"id": "p2", "birthDate": "1955-07-01", "identifier": [{"system": "urn:other", "value": "X2"}],
         "name": [{"text": "John Roe", "family": "Roe"}]},
        {"id": "p1", "gender": "male", "birthDate": "1970"},  # a repeated id: the first resource counts
        {"id": "", "birthDate": "1950"},
    ]
    frame = pl.DataFrame(rows, schema={f.name: f.dtype for f in PATIENT_EXTRA_DTYPE.fields})
    got = (patient_features(frame.lazy(), date(2026, 6, 30)).join(patient_frame(frame.lazy()), on="pid")
           .sort("pid").collect())
    assert got.select("pid", "age_years", "sex", "mrn", "mrn_system", "name", "phone", "birth_date").rows() == [
        ("p1", 66, "female", "M1", "https://a.example.org/mrn", "Jane Q Doe", "555", date(1960, 3, 1)),
        ("p2", 70, "unknown", "X2", "urn:other", "John Roe", None, date(1955, 7, 1)),
    ]
