"""The demo EHR's CDS client pieces: its JWTs, the prefetch query form, redaction and the error texts."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from risk.demo.cds_client import REDACTED, CdsJwtSigner, HookExchange, _explain, _redacted
from risk.demo.keys import PRIVATE_JWKS_NAME, public_jwks, write_demo_keys
from risk.errors import InvalidInput


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k")
    write_demo_keys(out, iss="urn:t")
    return out / PRIVATE_JWKS_NAME


def test_jwt_header_and_claims(key_file: Path) -> None:
    signer = CdsJwtSigner.from_file("urn:t", key_file)
    token = signer.token("http://svc/cds-services/x")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES384", "typ": "JWT", "kid": signer.kid}
    public = jwt.PyJWK(public_jwks(json.loads(key_file.read_text()))["keys"][0])
    claims = jwt.decode(token, public.key, algorithms=["ES384"], audience="http://svc/cds-services/x")
    assert claims["iss"] == "urn:t" and claims["exp"] - claims["iat"] == 300 and claims["jti"]
    assert signer.token("a") != signer.token("a")  # a fresh jti every call


def test_unusable_keys_name_the_setting(tmp_path: Path, key_file: Path) -> None:
    public = public_jwks(json.loads(key_file.read_text()))
    (tmp_path / "public.json").write_text(json.dumps(public))
    for path in (tmp_path / "public.json", tmp_path / "missing.json"):
        with pytest.raises(InvalidInput, match=r"demo\.cds_client_jwks_file"):
            CdsJwtSigner.from_file("urn:t", path)
    hs = {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "h", "d": "x"}
    with pytest.raises(InvalidInput, match="ES384 or RS384"):
        CdsJwtSigner("urn:t", hs)


def test_tokens_are_redacted_from_what_the_page_shows() -> None:
    auth = {"access_token": "secret", "scope": "system/*.rs"}
    body = {"hook": "patient-view", "fhirAuthorization": auth}
    shown = _redacted(body)
    assert shown is not None and shown["fhirAuthorization"]["access_token"] == REDACTED
    assert auth["access_token"] == "secret"  # the request itself is untouched
    exchange = HookExchange(url="u", request=shown, status_code=200, response={"cards": [{"summary": "s"}, 3]})
    assert "secret" not in exchange.pretty_request and exchange.cards == [{"summary": "s"}]


def test_error_texts(key_file: Path) -> None:
    signer = CdsJwtSigner.from_file("urn:t", key_file)
    assert "refused the demo EHR's JWT (iss urn:t" in _explain(401, None, signer)
    assert "unsigned call" in _explain(401, None, None)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "Required data cannot be obtained"}]}
    assert _explain(412, outcome, signer) == "HTTP 412: Required data cannot be obtained"
