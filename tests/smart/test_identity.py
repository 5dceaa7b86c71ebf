"""fhirUser claim: relative or absolute, normalised (SMART App Launch 2.2; client-js #105)."""

from __future__ import annotations

import pytest

from risk.smart.identity import parse_fhir_user


@pytest.mark.parametrize(("claim", "ref", "base"), [
    ("Practitioner/123", "Practitioner/123", None),
    ("https://ehr.example.org/fhir/Practitioner/123", "Practitioner/123", "https://ehr.example.org/fhir"),
    ("http://127.0.0.1:18080/fhir/R4/PractitionerRole/pr-1", "PractitionerRole/pr-1", "http://127.0.0.1:18080/fhir/R4"),
    ("https://ehr.example.org/fhir/Patient/p1/_history/3", "Patient/p1", "https://ehr.example.org/fhir"),
    ("  RelatedPerson/rp.7 ", "RelatedPerson/rp.7", None),
])
def test_relative_and_absolute_forms_normalise(claim: str, ref: str, base: str | None) -> None:
    user = parse_fhir_user(claim)
    assert user.reference == ref
    assert user.base_url == base


def test_same_server_check() -> None:
    absolute = parse_fhir_user("https://ehr.example.org/fhir/Practitioner/1")
    assert absolute.same_server("https://ehr.example.org/fhir/")
    assert not absolute.same_server("https://other.example.org/fhir")
    assert parse_fhir_user("Practitioner/1").same_server("https://anything")


@pytest.mark.parametrize("claim", ["", "Observation/1", "Practitioner", "Practitioner/1/extra",
                                   "ftp://x/Practitioner/1", "https://ehr/Practitioner/bad id", "https://ehr/"])
def test_not_a_user_reference_is_refused_naming_the_claim(claim: str) -> None:
    with pytest.raises(ValueError, match="fhirUser"):
        parse_fhir_user(claim)
