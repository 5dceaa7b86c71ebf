"""Authorization request, token-response parsing, discovery validation and appContext."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from risk.smart.discovery import SmartConfiguration
from risk.smart.errors import AppError, ErrorCode
from risk.smart.launch import TokenResponse, authorize_url, parse_app_context

DISCOVERY = {
    "issuer": "http://127.0.0.1:18445", "jwks_uri": "http://127.0.0.1:18445/jwks",
    "authorization_endpoint": "http://127.0.0.1:18445/auth", "token_endpoint": "http://127.0.0.1:18445/token",
    "capabilities": ["launch-ehr", "client-public", "permission-v2"], "code_challenge_methods_supported": ["S256"],
    "grant_types_supported": ["authorization_code"],
}
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_discovery_document_is_validated() -> None:
    cfg = SmartConfiguration.from_json("http://fhir/R4", DISCOVERY)
    assert cfg.token_endpoint.endswith("/token") and cfg.supports("launch-ehr")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("token_endpoint", "/token", "token_endpoint"),
    ("authorization_endpoint", None, "authorization_endpoint"),
    ("code_challenge_methods_supported", ["plain"], "S256"),
    ("code_challenge_methods_supported", None, "S256"),
    ("jwks_uri", "jwks", "jwks_uri"),
    ("capabilities", "launch-ehr", "capabilities"),
])
def test_bad_discovery_document_names_the_field(field: str, value: object, match: str) -> None:
    doc: dict[str, object] = dict(DISCOVERY)
    doc[field] = value
    with pytest.raises(ValueError, match=match):
        SmartConfiguration.from_json("http://fhir/R4", doc)


def test_authorize_url_has_every_smart_parameter() -> None:
    cfg = SmartConfiguration.from_json("http://fhir/R4", DISCOVERY)
    url = authorize_url(cfg, client_id="lungrisk-app", redirect_uri="http://127.0.0.1:18700/app/callback",
                        scope="launch openid", state="st", code_challenge="ch", aud="http://fhir/R4", launch="L1")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q == {"response_type": "code", "client_id": "lungrisk-app",
                 "redirect_uri": "http://127.0.0.1:18700/app/callback", "scope": "launch openid", "state": "st",
                 "aud": "http://fhir/R4", "code_challenge": "ch", "code_challenge_method": "S256", "launch": "L1"}
    standalone = authorize_url(cfg, client_id="c", redirect_uri="r", scope="s", state="st", code_challenge="ch",
                               aud="a")
    assert "launch=" not in standalone


def test_token_response_with_launch_context() -> None:
    tr = TokenResponse.parse({
        "access_token": "AT-SECRET-9", "token_type": "bearer", "expires_in": "3600", "scope": "launch patient/*.rs",
        "refresh_token": "RT-SECRET-9", "id_token": "idt", "patient": "lc-0001", "encounter": "e1",
        "fhirContext": [{"reference": "ImagingStudy/ct-1"}], "need_patient_banner": False,
        "appContext": "{\"trackingUid\":\"1.2.3\"}", "smart_style_url": "https://ehr/style.json",
    }, now=NOW, requested_scope="ignored")
    assert tr.expires_at == NOW + timedelta(hours=1)  # a string expires_in is tolerated (client-py #181)
    assert tr.patient == "lc-0001" and tr.encounter == "e1" and tr.need_patient_banner is False
    assert tr.fhir_context == ({"reference": "ImagingStudy/ct-1"},)
    assert tr.scope == "launch patient/*.rs" and tr.scope_echoed
    assert "SECRET" not in repr(tr)  # tokens never in reprs/logs


def test_missing_scope_falls_back_to_requested_and_says_so() -> None:
    tr = TokenResponse.parse({"access_token": "at", "token_type": "Bearer"}, now=NOW, requested_scope="launch x")
    assert tr.scope == "launch x" and not tr.scope_echoed
    assert tr.expires_at == NOW + timedelta(seconds=300)


@pytest.mark.parametrize(("body", "match"), [
    ({}, "access_token"),
    ({"access_token": "a", "token_type": "mac"}, "token_type"),
    ({"access_token": "a", "token_type": "Bearer", "expires_in": "soon"}, "expires_in"),
    ({"access_token": "a", "token_type": "Bearer", "expires_in": 0}, "expires_in"),
    ({"access_token": "a", "token_type": "Bearer", "patient": "a b"}, "patient"),
    ({"access_token": "a", "token_type": "Bearer", "fhirContext": "x"}, "fhirContext"),
    ({"access_token": "a", "token_type": "Bearer", "need_patient_banner": "yes"}, "need_patient_banner"),
])
def test_bad_token_response_is_an_app_error_naming_the_field(body: dict[str, object], match: str) -> None:
    with pytest.raises(AppError, match=match) as info:
        TokenResponse.parse(body, now=NOW, requested_scope="")
    assert info.value.code is ErrorCode.INVALID_TOKEN_RESPONSE


def test_app_context_forms() -> None:
    c = parse_app_context('{"riskAssessment":"RiskAssessment/ra-77","trackingUid":"1.2.826.0.1.3680043.10.511.3.1.2"}')
    assert c is not None and c.risk_assessment == "RiskAssessment/ra-77"
    assert c.tracking_uid == "1.2.826.0.1.3680043.10.511.3.1.2"
    c = parse_app_context('{"assessmentId":"asm-9","view":"explanation"}')
    assert c is not None and c.assessment_id == "asm-9" and c.view == "explanation"
    bare = parse_app_context("1.2.3.4")
    assert bare is not None and bare.tracking_uid == "1.2.3.4"
    assert parse_app_context(None) is None and parse_app_context("  ") is None
    hostile = parse_app_context('{"trackingUid":"<script>","riskAssessment":"Patient/1","view":"admin"}')
    assert hostile is not None and hostile.tracking_uid is None and hostile.risk_assessment is None
    assert hostile.view is None
