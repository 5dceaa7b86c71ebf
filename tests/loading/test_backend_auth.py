"""SMART Backend Services client without a server: the client assertion (SMART App Launch 2.2 backend-services:
iss = sub = client_id, aud = token URL, exp ≤ 5 min, unique jti, typ JWT, kid), token caching and error mapping.
The real authorization server is exercised in tests/deploy/test_stack.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from risk.config import SmartBackendSettings
from risk.errors import ConfigurationError, InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.loading.backend_auth import BackendServicesAuth, read_private_jwks

TOKEN_URL = "http://as.test/token"


def private_jwk(alg: str, kid: str) -> tuple[dict[str, Any], Any]:
    if alg == "RS384":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(key))
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(ECAlgorithm.to_jwk(key))
    return {**jwk, "alg": alg, "kid": kid}, key.public_key()


def token_server(calls: list[dict[str, str]], *, status: int = 200, body: dict[str, Any] | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        calls.append(form)
        return httpx.Response(status, json=body if body is not None else
                              {"access_token": f"token-{len(calls)}", "token_type": "bearer", "expires_in": 300,
                               "scope": form["scope"]})
    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_assertion_follows_the_smart_rules(alg: str) -> None:
    jwk, public = private_jwk(alg, "k1")
    calls: list[dict[str, str]] = []
    auth = BackendServicesAuth(TOKEN_URL, "lungrisk-backend", [jwk], scope="system/*.rs", http=token_server(calls))
    assert auth() == "token-1"
    form = calls[0]
    assert form["grant_type"] == "client_credentials" and form["scope"] == "system/*.rs"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header = jwt.get_unverified_header(form["client_assertion"])
    assert (header["alg"], header["typ"], header["kid"]) == (alg, "JWT", "k1")
    claims = jwt.decode(form["client_assertion"], public, algorithms=[alg], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == "lungrisk-backend"
    assert 0 < claims["exp"] - time.time() <= 300
    second = auth.client_assertion()
    assert jwt.decode(second, public, algorithms=[alg], audience=TOKEN_URL)["jti"] != claims["jti"]


def test_token_is_cached_until_invalidated() -> None:
    jwk, _ = private_jwk("ES384", "k1")
    calls: list[dict[str, str]] = []
    auth = BackendServicesAuth(TOKEN_URL, "c", [jwk], scope="system/*.rs", http=token_server(calls))
    assert auth.token() == auth.token() == "token-1"
    auth.invalidate()
    assert auth.token() == "token-2"
    assert auth.granted_scope == "system/*.rs"


def test_short_lived_tokens_are_refreshed_before_they_expire() -> None:
    jwk, _ = private_jwk("ES384", "k1")
    calls: list[dict[str, str]] = []
    http = token_server(calls, body={"access_token": "t", "expires_in": 0.2})
    auth = BackendServicesAuth(TOKEN_URL, "c", [jwk], scope="system/*.rs", http=http)
    auth.token()
    time.sleep(0.2)
    auth.token()
    assert len(calls) == 2


def test_refusal_names_the_oauth_error() -> None:
    jwk, _ = private_jwk("RS384", "k1")
    http = token_server([], status=401, body={"error": "invalid_client", "error_description": "jti reused"})
    with pytest.raises(UpstreamRejected, match="invalid_client jti reused"):
        BackendServicesAuth(TOKEN_URL, "c", [jwk], scope="system/*.rs", http=http).token()


def test_unreachable_or_failing_server_is_unavailable() -> None:
    jwk, _ = private_jwk("RS384", "k1")
    with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
        BackendServicesAuth(TOKEN_URL, "c", [jwk], scope="s", http=token_server([], status=503, body={})).token()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(UpstreamUnavailable, match="token request"):
        BackendServicesAuth(TOKEN_URL, "c", [jwk], scope="s", http=http).token()


def test_key_selection_and_bad_arguments() -> None:
    rs, _ = private_jwk("RS384", "r")
    es, _ = private_jwk("ES384", "e")
    assert BackendServicesAuth(TOKEN_URL, "c", [rs, es], scope="s", key_id="e").algorithm == "ES384"
    with pytest.raises(InvalidInput) as err:
        BackendServicesAuth(TOKEN_URL, "c", [rs], scope="s", key_id="nope")
    assert err.value.field == "smart_backend.key_id"
    with pytest.raises(InvalidInput) as err:
        BackendServicesAuth("ftp://x", "c", [rs], scope="s")
    assert err.value.field == "smart_backend.token_url"
    with pytest.raises(InvalidInput) as err:
        BackendServicesAuth(TOKEN_URL, "c", [rs], scope=" ")
    assert err.value.field == "smart_backend.scope"


def test_read_private_jwks_accepts_only_private_rs384_or_es384(tmp_path: Path) -> None:
    rs, _ = private_jwk("RS384", "r")
    good = tmp_path / "keys.json"
    good.write_text(json.dumps({"keys": [{"kty": "oct", "k": "x", "alg": "HS256"}, rs]}))
    assert [k["kid"] for k in read_private_jwks(good)] == ["r"]
    public_only = tmp_path / "public.json"
    public = {k: v for k, v in rs.items() if k in ("kty", "n", "e", "alg", "kid")}
    public_only.write_text(json.dumps({"keys": [public]}))
    for path, message in [(public_only, "no private key"), (tmp_path / "missing.json", "cannot read")]:
        with pytest.raises(InvalidInput, match=message) as err:
            read_private_jwks(path)
        assert err.value.field == "smart_backend.private_jwks_file"


def test_from_settings_names_the_missing_setting() -> None:
    with pytest.raises(ConfigurationError) as err:
        BackendServicesAuth.from_settings(SmartBackendSettings(client_id="c"))
    assert err.value.setting == "RISK_SMART_BACKEND__TOKEN_URL"
    assert not BackendServicesAuth.configured(SmartBackendSettings(client_id="c"))
