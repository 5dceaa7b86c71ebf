"""Fixtures for the CDS Hooks tests: the service (in-process, real JWT verification with a JWK Set served over
loopback HTTP), the project's CDS client harness, and the CDS Hooks 2.0 JSON Schemas."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from risk.app import create_app
from risk.cds.service import CdsService
from risk.config import Settings, load_settings
from tests.support.cds_client import ISSUER, CdsClient, ClientKeys, JwksServer, JwtSigner

SCHEMAS = Path(__file__).with_name("schemas")
BASE = "http://testserver"
TODAY = date(2025, 6, 2)


@pytest.fixture(scope="session")
def client_keys() -> ClientKeys:
    return ClientKeys()


@pytest.fixture(scope="session")
def jwks_server(client_keys: ClientKeys) -> Iterator[JwksServer]:
    with JwksServer(client_keys.jwks()) as server:
        yield server


def make_settings(tmp_path: Path, jwks_url: str, **cds: Any) -> Settings:
    cds_settings: dict[str, Any] = {"issuers": [{"iss": ISSUER, "jwks_url": jwks_url}], "jwks_min_refresh_s": 0}
    cds_settings.update(cds)
    return load_settings(store={"url": f"sqlite:///{tmp_path}/cds.db"}, public_base_url=BASE, cds=cds_settings)


@pytest.fixture
def settings(tmp_path: Path, jwks_server: JwksServer) -> Settings:
    return make_settings(tmp_path, jwks_server.url)


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.cds.today = lambda: TODAY
    with TestClient(app, base_url=BASE) as client:
        yield client


@pytest.fixture
def service(app_client: TestClient) -> CdsService:
    svc: CdsService = app_client.app.state.cds  # type: ignore[attr-defined]
    return svc


@pytest.fixture
def signer(client_keys: ClientKeys) -> JwtSigner:
    return JwtSigner(client_keys)


@pytest.fixture
def cds(app_client: TestClient, signer: JwtSigner) -> CdsClient:
    return CdsClient(app_client, BASE, signer)


# --- JSON Schema validation ------------------------------------------------------------------------------------
def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


_REGISTRY = _registry()


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="session")
def schema() -> Callable[[str, Any], None]:
    """``schema("response", doc)`` raises on the first violation of the CDS Hooks 2.0 schema."""
    cache: dict[str, Draft202012Validator] = {}

    def check(name: str, document: Any) -> None:
        if name not in cache:
            cache[name] = validator(name)
        errors = sorted(cache[name].iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
        assert_no_empty(document, allow_empty_cards=True)

    return check


def assert_no_empty(value: Any, path: str = "$", *, allow_empty_cards: bool = False) -> None:
    """No null, "", [] or {} anywhere (CDS Hooks 2.0: JSON elements SHALL NOT be null or empty)."""
    empty = value is None or value == "" or value == [] or value == {}
    if empty and not (allow_empty_cards and path == "$.cards" and value == []):
        raise AssertionError(f"{path} is null or empty")
    if isinstance(value, dict):
        for k, v in value.items():
            assert_no_empty(v, f"{path}.{k}", allow_empty_cards=allow_empty_cards)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_no_empty(v, f"{path}[{i}]", allow_empty_cards=allow_empty_cards)
