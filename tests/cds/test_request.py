"""Targeted parsing of hook requests: the fields the spec requires, each failure naming the field."""

from __future__ import annotations

import json

import pytest

from risk.cds.request import parse_hook_request
from risk.errors import InvalidInput
from tests.support.cds_client import hook_request


def _raw(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


def test_https_fhir_server_required_in_production() -> None:
    body = hook_request("patient-view", "p1", fhir_server="http://ehr.example/fhir", access_token="t")
    assert parse_hook_request(_raw(body)).fhir_server == "http://ehr.example/fhir"
    with pytest.raises(InvalidInput) as info:
        parse_hook_request(_raw(body), require_https=True)
    assert info.value.field == "fhirServer"


def test_access_token_is_not_in_the_repr() -> None:
    body = hook_request("patient-view", "p1", fhir_server="https://ehr.example/fhir", access_token="secret-token")
    request = parse_hook_request(_raw(body))
    assert request.fhir_authorization is not None and request.fhir_authorization.access_token == "secret-token"
    assert "secret-token" not in repr(request)


def test_prefetch_token_values_include_user_identifiers() -> None:
    request = parse_hook_request(_raw(hook_request("patient-view", "p1", user="PractitionerRole/r9",
                                                   context={"encounterId": "e1"})))
    assert request.token_values() == {"context.userId": "PractitionerRole/r9", "context.patientId": "p1",
                                      "context.encounterId": "e1", "userPractitionerRoleId": "r9"}


@pytest.mark.parametrize(("auth", "field"), [
    ({"token_type": "Bearer", "expires_in": 1, "scope": "s", "subject": "c"}, "fhirAuthorization.access_token"),
    ({"access_token": "t", "token_type": "MAC", "expires_in": 1, "scope": "s", "subject": "c"},
     "fhirAuthorization.token_type"),
    ({"access_token": "t", "token_type": "Bearer", "scope": "s", "subject": "c"}, "fhirAuthorization.expires_in"),
    ({"access_token": "t", "token_type": "Bearer", "expires_in": 1, "subject": "c"}, "fhirAuthorization.scope"),
    ({"access_token": "t", "token_type": "Bearer", "expires_in": 1, "scope": "s"}, "fhirAuthorization.subject"),
])
def test_fhir_authorization_fields(auth: dict[str, object], field: str) -> None:
    body = hook_request("patient-view", "p1", fhir_server="https://ehr.example/fhir")
    body["fhirAuthorization"] = auth
    with pytest.raises(InvalidInput) as info:
        parse_hook_request(_raw(body))
    assert info.value.field == field


def test_patient_id_is_a_logical_id() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_hook_request(_raw(hook_request("patient-view", "Patient/p1")))
    assert info.value.field == "context.patientId"
