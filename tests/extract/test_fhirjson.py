from datetime import date

import pytest

from risk.extract.fhirjson import clinical_date, reference_id, resource_key


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-05", date(2024, 3, 5)),
    ("2024-03-05T23:30:00-05:00", date(2024, 3, 5)),  # the date as written: no time-zone shift
    ("2024-03-05T01:00:00Z", date(2024, 3, 5)),
    ("2024-03", date(2024, 3, 1)),
    ("2024", date(2024, 1, 1)),
    ("2024-02-30", None),
    ("2024-2-03", None),
    ("24-03-05", None),
    ("", None),
    ("0000-01-01", None),
    ("\u0662\u0660\u0662\u0664-03-05", None),  # non-ASCII digits
    ("\uff12\uff10\uff12\uff14-03-05", None),
    ("+024-03-05", None),
    ("2024-03-+5", None),
    ("2024-03-5 ", None),
    ("2024-W10-2", None),  # an ISO week date: fromisoformat would take it
    ("20240305", None),
    ("2024-03-05junk", date(2024, 3, 5)),  # the first ten characters, as the polars rule
    (20240305, None),
    (None, None),
])
def test_clinical_date(text: object, expected: date | None) -> None:
    assert clinical_date(text) == expected


@pytest.mark.parametrize(("ref", "expected"), [
    ({"reference": "Patient/123"}, "123"),
    ({"reference": "https://ehr.example.org/fhir/Patient/123"}, "123"),
    ({"reference": "Patient/123/_history/2"}, "123"),
    ({"reference": "Group/9"}, None),
    ({"reference": "MyPatient/5"}, None),
    ({"reference": "urn:uuid:abc"}, None),
    ({"display": "Jane"}, None),
    ("Patient/1", None),
])
def test_reference_id(ref: object, expected: str | None) -> None:
    assert reference_id(ref, "Patient") == expected


def test_resource_key_falls_back_when_there_is_no_id() -> None:
    assert resource_key({"resourceType": "Observation", "id": "o1"}, "#0") == "Observation/o1"
    assert resource_key({"resourceType": "Observation"}, "#3") == "Observation/#3"
    assert resource_key({}, "#3") == "Resource/#3"
