"""The demo EHR's CDS client key and its registration: the env file loads as settings, and the service's own
authenticator accepts the JWTs the demo EHR signs with that key."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from risk.cds.security import CdsAuthenticator, Unauthorized
from risk.config import load_settings
from risk.demo.cds_client import CdsJwtSigner
from risk.demo.keys import ENV_NAME, PRIVATE_JWKS_NAME, main, public_jwks, write_demo_keys
from risk.errors import InvalidInput
from tests.conftest import read_stack_env

AUD = "http://127.0.0.1:18700/cds-services/lung-risk"


def test_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    env = write_demo_keys(tmp_path, iss="urn:x", fhir_servers=["http://127.0.0.1:18080/fhir/R4/"])
    private = tmp_path / PRIVATE_JWKS_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = json.loads(private.read_text())["keys"][0]
    assert key["alg"] == "ES384" and key["crv"] == "P-384" and "d" in key
    first = env.read_text()
    write_demo_keys(tmp_path, iss="urn:x", fhir_servers=["http://127.0.0.1:18080/fhir/R4/"])
    assert env.read_text() == first  # same key, same registration
    values = read_stack_env(env)
    issuers = json.loads(values["RISK_CDS__ISSUERS"])
    assert issuers == [{"iss": "urn:x", "jwks": {"keys": [{k: key[k] for k in ("kty", "crv", "x", "y", "kid",
                                                                                 "alg", "use")}]},
                        "fhir_servers": ["http://127.0.0.1:18080/fhir/R4"]}]
    assert '"d"' not in values["RISK_CDS__ISSUERS"]
    assert values["RISK_DEMO__CDS_CLIENT_JWKS_FILE"] == str(private.resolve())


def test_public_jwks_drops_every_private_member() -> None:
    rsa = {"kty": "RSA", "n": "n", "e": "AQAB", "d": "d", "p": "p", "q": "q", "dp": "1", "dq": "2", "qi": "3",
           "kid": "k", "alg": "RS384"}
    assert public_jwks({"keys": [rsa]}) == {"keys": [{"kty": "RSA", "n": "n", "e": "AQAB", "kid": "k",
                                                     "alg": "RS384"}]}
    with pytest.raises(InvalidInput, match=r"demo\.cds_client_jwks_file"):
        public_jwks({"keys": []})


def test_env_file_registers_the_demo_ehr_with_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = write_demo_keys(tmp_path, iss="urn:lungrisk:demo-ehr")
    for key, value in read_stack_env(env).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.demo.cds_client_iss == "urn:lungrisk:demo-ehr"
    signer = CdsJwtSigner.from_file(settings.demo.cds_client_iss, settings.demo.cds_client_jwks_file)  # type: ignore[arg-type]
    auth = CdsAuthenticator(settings.cds)
    caller = asyncio.run(auth.authenticate(f"Bearer {signer.token(AUD)}", AUD))
    assert caller.iss == "urn:lungrisk:demo-ehr" and caller.jti
    with pytest.raises(Unauthorized):  # the aud is checked
        asyncio.run(auth.authenticate(f"Bearer {signer.token(AUD + '/feedback')}", AUD))
    other = CdsJwtSigner("urn:lungrisk:demo-ehr", json.loads(
        (write_demo_keys(tmp_path / "other", iss="urn:y").parent / PRIVATE_JWKS_NAME).read_text())["keys"][0])
    with pytest.raises(Unauthorized):  # another key with the same iss is refused
        asyncio.run(auth.authenticate(f"Bearer {other.token(AUD)}", AUD))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--fhir-server", "http://f/fhir"]) == 0
    assert (tmp_path / ENV_NAME).is_file() and "urn:lungrisk:demo-ehr" in capsys.readouterr().out
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / PRIVATE_JWKS_NAME).write_text("not json")
    assert main(["--out", str(tmp_path / "broken")]) == 2
    assert "demo.cds_client_jwks_file" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--iss", "it's"]) == 2
