"""JWT client authentication (CDS Hooks 2.0 "Trusting CDS Clients" + the best-practices checklist): every bad-token
case is a 401 with the same body, tokens never reach the logs, keys come only from allowlisted URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import ConfigurationError, load_settings
from tests.cds.conftest import BASE, make_settings
from tests.support.cds_client import (
    ISSUER,
    CdsClient,
    ClientKeys,
    JwksServer,
    JwtSigner,
    ec_public_jwk,
    hook_request,
)

DISCOVERY = f"{BASE}/cds-services"
SERVICE = f"{BASE}/cds-services/lung-risk"


def _hmac_token(header: dict[str, object], payload: dict[str, object], secret: bytes) -> str:
    """An HMAC-signed JWT built by hand (PyJWT refuses to use a public key as an HMAC secret)."""
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha384).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def _get(cds: CdsClient, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return cds.http.get(DISCOVERY, headers=headers).status_code


def test_es384_and_rs384_accepted(cds: CdsClient, signer: JwtSigner) -> None:
    assert _get(cds, signer.token(DISCOVERY, alg="ES384")) == 200
    assert _get(cds, signer.token(DISCOVERY, alg="RS384")) == 200


def test_aud_may_be_an_array_holding_the_endpoint(cds: CdsClient, signer: JwtSigner) -> None:
    assert _get(cds, signer.token([DISCOVERY])) == 200


BAD_CASES = {
    "no token": lambda s, k: None,
    "alg none": lambda s, k: s.token(DISCOVERY, alg="none"),
    "HS256 with a shared secret": lambda s, k: jwt.encode(
        {"iss": ISSUER, "aud": DISCOVERY, "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "hs"},
        "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256", headers={"kid": k.ec_kid, "typ": "JWT"}),
    "HS384 keyed with the public key (algorithm confusion)": lambda s, k: _hmac_token(
        {"alg": "HS384", "kid": k.ec_kid, "typ": "JWT"},
        {"iss": ISSUER, "aud": DISCOVERY, "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "hs2"},
        k.ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)),
    "wrong aud (another endpoint)": lambda s, k: s.token(SERVICE),
    "wrong aud (another host)": lambda s, k: s.token("https://elsewhere.example/cds-services"),
    "expired": lambda s, k: s.token(DISCOVERY, claims={"exp": int(time.time()) - 120, "iat": int(time.time()) - 420}),
    "iat in the future": lambda s, k: s.token(DISCOVERY, claims={"iat": int(time.time()) + 600,
                                                                 "exp": int(time.time()) + 900}),
    "lifetime beyond the limit": lambda s, k: s.token(DISCOVERY, claims={"exp": int(time.time()) + 7200}),
    "unknown iss": lambda s, k: JwtSigner(k, iss="https://intruder.example").token(DISCOVERY),
    "wrong key, same kid": lambda s, k: s.token(DISCOVERY, key=ec.generate_private_key(ec.SECP384R1())),
    "unknown kid": lambda s, k: s.token(DISCOVERY, kid="not-a-kid"),
    "no kid": lambda s, k: jwt.encode({"iss": ISSUER, "aud": DISCOVERY, "exp": int(time.time()) + 300,
                                       "iat": int(time.time()), "jti": "nokid"}, k.ec_key, algorithm="ES384"),
    "typ is not JWT": lambda s, k: s.token(DISCOVERY, headers={"typ": "at+jwt"}),
    "no jti": lambda s, k: s.token(DISCOVERY, drop=("jti",)),
    "no exp": lambda s, k: s.token(DISCOVERY, drop=("exp",)),
    "no iat": lambda s, k: s.token(DISCOVERY, drop=("iat",)),
    "RS384 header on the EC key's kid": lambda s, k: s.token(DISCOVERY, alg="RS384", kid=k.ec_kid),
    "ES256 (not an accepted algorithm)": lambda s, k: jwt.encode(
        {"iss": ISSUER, "aud": DISCOVERY, "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "es256"},
        ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": k.ec_kid, "typ": "JWT"}),
    "not a JWT": lambda s, k: "not.a.jwt",
    "crit header": lambda s, k: s.token(DISCOVERY, headers={"crit": ["exp"]}),
    "nbf in the future": lambda s, k: s.token(DISCOVERY, claims={"nbf": int(time.time()) + 600}),
    "standard base64 alphabet": lambda s, k: s.token(DISCOVERY).replace("-", "+").replace("_", "/") + "+/",
    "aud of the wrong type": lambda s, k: s.token(DISCOVERY, claims={"aud": {"url": DISCOVERY}}),
}


# The reason the service logs for each case (never sent to the client): each case fails for its own reason.
REASONS = {
    "no token": "no Authorization header",
    "alg none": "algorithm 'none' not accepted",
    "HS256 with a shared secret": "algorithm 'HS256' not accepted",
    "HS384 keyed with the public key (algorithm confusion)": "algorithm 'HS384' not accepted",
    "wrong aud (another endpoint)": "is not this endpoint",
    "wrong aud (another host)": "is not this endpoint",
    "expired": "expired iss=",
    "iat in the future": "issued in the future",
    "lifetime beyond the limit": "exceeds the limit",
    "unknown iss": "not on the allowlist",
    "wrong key, same kid": "bad signature",
    "unknown kid": "no key 'not-a-kid'",
    "no kid": "no kid",
    "typ is not JWT": "typ 'at+jwt' is not JWT",
    "no jti": "missing claim 'jti'",
    "no exp": "missing claim 'exp'",
    "no iat": "missing claim 'iat'",
    "RS384 header on the EC key's kid": "key type 'EC' does not match RS384",
    "ES256 (not an accepted algorithm)": "algorithm 'ES256' not accepted",
    "not a JWT": "malformed JWT",
    "crit header": "crit header parameters",
    "nbf in the future": "not valid yet",
    "standard base64 alphabet": "malformed JWT",
    "aud of the wrong type": "is not this endpoint",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_tokens_get_401_with_no_detail(case: str, cds: CdsClient, signer: JwtSigner, client_keys: ClientKeys,
                                           caplog: pytest.LogCaptureFixture) -> None:
    token = BAD_CASES[case](signer, client_keys)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with caplog.at_level(logging.DEBUG):
        response = cds.http.get(DISCOVERY, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    # the same body whatever the reason: nothing says why
    assert response.json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": "Authentication required"}]}
    if token:
        assert token not in caplog.text, "a JWT reached the logs"
    assert REASONS[case] in caplog.text


def test_replayed_jti_is_refused(cds: CdsClient, signer: JwtSigner) -> None:
    token = signer.token(DISCOVERY)
    assert _get(cds, token) == 200
    assert _get(cds, token) == 401


def test_replay_cache_survives_a_restart(tmp_path: Path, jwks_server: JwksServer, signer: JwtSigner) -> None:
    settings = make_settings(tmp_path, jwks_server.url)
    token = signer.token(DISCOVERY)
    with TestClient(create_app(settings), base_url=BASE) as first:
        assert first.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with TestClient(create_app(settings), base_url=BASE) as second:
        assert second.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert second.get(DISCOVERY, headers={"Authorization": f"Bearer {signer.token(DISCOVERY)}"}
                          ).status_code == 200


def test_tokens_for_the_service_endpoint_are_checked_against_it(cds: CdsClient, signer: JwtSigner) -> None:
    body = {"hook": "patient-view"}
    assert cds.call("lung-risk", body, token=signer.token(DISCOVERY)).status_code == 401
    # accepted token, then the body is judged (422 naming the field)
    response = cds.call("lung-risk", body, token=signer.token(SERVICE))
    assert response.status_code == 422


def test_jku_not_on_the_allowlist_is_never_fetched(cds: CdsClient, client_keys: ClientKeys) -> None:
    with JwksServer(client_keys.jwks()) as rogue:
        token = JwtSigner(client_keys, jku=rogue.url).token(DISCOVERY)
        assert _get(cds, token) == 401
        assert rogue.requests == 0


def test_allowlisted_jku_is_used(tmp_path: Path, client_keys: ClientKeys) -> None:
    with JwksServer(client_keys.jwks()) as keys:
        settings = load_settings(store={"url": f"sqlite:///{tmp_path}/a.db"}, public_base_url=BASE,
                                 cds={"issuers": [{"iss": ISSUER}], "allowed_jku": [keys.url]})
        with TestClient(create_app(settings), base_url=BASE) as client:
            token = JwtSigner(client_keys, jku=keys.url).token(DISCOVERY)
            assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert keys.requests == 1


def test_out_of_band_jwks(tmp_path: Path, client_keys: ClientKeys) -> None:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/b.db"}, public_base_url=BASE,
                             cds={"issuers": [{"iss": ISSUER, "jwks": client_keys.jwks()}]})
    with TestClient(create_app(settings), base_url=BASE) as client:
        token = JwtSigner(client_keys).token(DISCOVERY)
        assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_jwks_is_cached_and_rotated(tmp_path: Path) -> None:
    keys = ClientKeys()
    with JwksServer(keys.jwks()) as server:
        settings = make_settings(tmp_path, server.url, jwks_min_refresh_s=0)
        with TestClient(create_app(settings), base_url=BASE) as client:
            signer = JwtSigner(keys)
            for _ in range(3):
                assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {signer.token(DISCOVERY)}"}
                                  ).status_code == 200
            assert server.requests == 1  # cached
            new_key = ec.generate_private_key(ec.SECP384R1())
            server.jwks = {"keys": [ec_public_jwk(new_key, "rotated-1")]}
            token = signer.token(DISCOVERY, kid="rotated-1", key=new_key)
            assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert server.requests == 2  # the unknown kid made it fetch the rotated set once


def test_tenant_allowlist(tmp_path: Path, jwks_server: JwksServer, client_keys: ClientKeys) -> None:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/t.db"}, public_base_url=BASE, cds={
        "issuers": [{"iss": ISSUER, "jwks_url": jwks_server.url, "tenants": ["hospital-a"]}]})
    with TestClient(create_app(settings), base_url=BASE) as client:
        def status(tenant: str | None) -> int:
            token = JwtSigner(client_keys, tenant=tenant).token(DISCOVERY)
            return client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code

        assert status("hospital-a") == 200
        assert status("hospital-b") == 401
        assert status(None) == 401


def test_per_client_extra_audience(tmp_path: Path, jwks_server: JwksServer, client_keys: ClientKeys) -> None:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/x.db"}, public_base_url=BASE, cds={
        "issuers": [{"iss": ISSUER, "jwks_url": jwks_server.url, "audiences": ["sand_man"]}]})
    with TestClient(create_app(settings), base_url=BASE) as client:
        token = JwtSigner(client_keys).token("sand_man")
        assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_open_mode_is_explicit_and_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/o.db"}, public_base_url=BASE,
                             cds={"open_mode": True})
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings), base_url=BASE) as client:
        assert client.get(DISCOVERY).status_code == 200
    assert "OPEN MODE" in caplog.text


def test_public_discovery_setting(tmp_path: Path, jwks_server: JwksServer) -> None:
    settings = make_settings(tmp_path, jwks_server.url, public_discovery=True)
    with TestClient(create_app(settings), base_url=BASE) as client:
        assert client.get(DISCOVERY).status_code == 200
        assert client.post(SERVICE, content=b"{}").status_code == 401  # the service itself still needs a JWT


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["ES384", "HS384"], []])
def test_symmetric_or_none_algorithms_cannot_be_configured(algorithms: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="RISK_CDS__ALGORITHMS"):
        load_settings(cds={"algorithms": algorithms})


def test_open_mode_refused_in_production() -> None:
    with pytest.raises(ConfigurationError):
        load_settings(environment="production", store={"url": "postgresql+psycopg://x@h/db"},
                      cds={"open_mode": True})


def test_unknown_kids_do_not_hammer_the_jwks_url(tmp_path: Path) -> None:
    keys = ClientKeys()
    with JwksServer(keys.jwks()) as server:
        settings = make_settings(tmp_path, server.url, jwks_min_refresh_s=3600)
        with TestClient(create_app(settings), base_url=BASE) as client:
            signer = JwtSigner(keys)
            assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {signer.token(DISCOVERY)}"}
                              ).status_code == 200
            for i in range(5):
                token = signer.token(DISCOVERY, kid=f"unknown-{i}")
                assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 401
            assert server.requests == 1  # re-fetch on an unknown kid is rate limited


def test_jwks_url_that_fails_gives_401_not_500(tmp_path: Path) -> None:
    keys = ClientKeys()
    with JwksServer(keys.jwks()) as server:
        server.status = 503
        settings = make_settings(tmp_path, server.url)
        with TestClient(create_app(settings), base_url=BASE) as client:
            token = JwtSigner(keys).token(DISCOVERY)
            assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_fhir_server_must_be_registered_for_the_client(tmp_path: Path, jwks_server: JwksServer,
                                                        client_keys: ClientKeys) -> None:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/f.db"}, public_base_url=BASE, cds={
        "issuers": [{"iss": ISSUER, "jwks_url": jwks_server.url, "fhir_servers": ["https://ehr.example.org/fhir"]}]})
    with TestClient(create_app(settings), base_url=BASE) as client:
        cds = CdsClient(client, BASE, JwtSigner(client_keys))
        body = hook_request("patient-view", "p1", fhir_server="http://169.254.169.254/latest", access_token="t")
        response = cds.call("lung-risk", body)
        assert response.status_code == 422 and response.json()["issue"][0]["expression"] == ["fhirServer"]
        body = hook_request("patient-view", "p1", fhir_server="https://ehr.example.org/fhirx", access_token="t")
        assert cds.call("lung-risk", body).status_code == 422
