"""CORS for browser-based CDS clients: an explicit origin allowlist, on the CDS routes only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from tests.cds.conftest import BASE, make_settings
from tests.support.cds_client import JwksServer, JwtSigner

EHR = "https://ehr.example.org"


@pytest.fixture
def client(tmp_path: Path, jwks_server: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path, jwks_server.url, cors_origins=[EHR])), base_url=BASE) as c:
        yield c


def _preflight(client: TestClient, origin: str, path: str = "/cds-services/lung-risk") -> object:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization, content-type"})


def test_preflight_from_an_allowed_origin(client: TestClient) -> None:
    response = _preflight(client, EHR)
    assert response.status_code == 200  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["access-control-allow-origin"] == EHR
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()


def test_other_origins_are_not_allowed(client: TestClient, signer: JwtSigner) -> None:
    response = _preflight(client, "https://evil.example")
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "access-control-allow-origin" not in response.headers  # type: ignore[attr-defined]
    url = f"{BASE}/cds-services"
    got = client.get(url, headers={"Origin": "https://evil.example", "Authorization": f"Bearer {signer.token(url)}"})
    assert "access-control-allow-origin" not in got.headers


def test_actual_requests_carry_the_header_and_other_routes_do_not(client: TestClient, signer: JwtSigner) -> None:
    url = f"{BASE}/cds-services"
    got = client.get(url, headers={"Origin": EHR, "Authorization": f"Bearer {signer.token(url)}"})
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == EHR
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": EHR}).headers


def test_no_cors_without_an_allowlist(app_client: TestClient) -> None:
    assert "access-control-allow-origin" not in _preflight(app_client, EHR).headers  # type: ignore[attr-defined]
