"""Shared fixtures for tests that use the local stack of real servers (deploy/local/stack.sh).

``stack`` reads ``deploy/local/state/stack.env`` (``RISK_TEST_STACK_ENV`` may name another file, e.g. a second
stack on other ports), checks that Orthanc, the FHIR server and the SMART authorization server all answer, and
FAILS the test (never skips) with "local stack not running: run deploy/local/stack.sh up" when they do not: a
suite that silently skips its integration tests proves nothing. Only tests that ask for these fixtures touch
the stack; mark them ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from risk.config import Settings, load_settings
from risk.loading.backend_auth import BackendServicesAuth, read_private_jwks

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV_FILE = Path(os.environ.get("RISK_TEST_STACK_ENV", ROOT / "deploy" / "local" / "state" / "stack.env"))
NOT_RUNNING = "local stack not running: run deploy/local/stack.sh up"


def read_stack_env(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a stack.env file (comments and blank lines skipped, quotes stripped)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def settings_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``RISK_SECTION__FIELD`` values of ``env`` as nested keyword arguments for ``load_settings``."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("RISK_"):
            continue
        parts = key.removeprefix("RISK_").lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


@dataclass(frozen=True)
class Stack:
    """Where the running local stack is, and the clients it registers (deploy/local/README.md)."""

    env: Mapping[str, str]
    env_file: Path
    fhir_base_url: str
    dicomweb_url: str
    orthanc_url: str
    pacs_auth: tuple[str, str]
    smart_issuer: str
    token_url: str
    app_client_id: str
    shortlived_client_id: str
    readonly_client_id: str
    backend_client_id: str
    backend_private_jwks_file: Path
    fhir_auth: bool

    def settings(self, **overrides: Any) -> Settings:
        """The service's settings pointed at this stack (``overrides`` are merged per section)."""
        values = settings_overrides(self.env)
        for section, fields in overrides.items():
            if isinstance(fields, dict) and isinstance(values.get(section), dict):
                values[section] = {**values[section], **fields}
            else:
                values[section] = fields
        return load_settings(**values)


def _stack_from_env(path: Path) -> Stack:
    if not path.is_file():
        pytest.fail(f"{NOT_RUNNING} ({path} does not exist)")
    env = read_stack_env(path)
    try:
        return Stack(
            env=env, env_file=path,
            fhir_base_url=env["RISK_FHIR__BASE_URL"], dicomweb_url=env["RISK_DICOMWEB__URL"],
            orthanc_url=env["STACK_ORTHANC_URL"],
            pacs_auth=(env["RISK_DICOMWEB__USERNAME"], env["RISK_DICOMWEB__PASSWORD"]),
            smart_issuer=env["STACK_SMART_ISSUER"], token_url=env["STACK_SMART_TOKEN_URL"],
            app_client_id=env["STACK_APP_CLIENT_ID"], shortlived_client_id=env["STACK_APP_SHORTLIVED_CLIENT_ID"],
            readonly_client_id=env["STACK_APP_READONLY_CLIENT_ID"], backend_client_id=env["STACK_BACKEND_CLIENT_ID"],
            backend_private_jwks_file=Path(env["STACK_BACKEND_PRIVATE_JWKS_FILE"]),
            fhir_auth=env.get("STACK_FHIR_AUTH", "1") != "0")
    except KeyError as exc:
        pytest.fail(f"{path} lacks {exc}: restart the stack (deploy/local/stack.sh down && deploy/local/stack.sh up)")


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running local stack; fails (never skips) when any of its three servers does not answer."""
    s = _stack_from_env(STACK_ENV_FILE)
    probes = {
        "Orthanc": (f"{s.orthanc_url}/system", s.pacs_auth),
        "FHIR server": (f"{s.fhir_base_url}/metadata", None),
        "SMART authorization server": (f"{s.smart_issuer}/.well-known/smart-configuration", None),
    }
    for name, (url, auth) in probes.items():
        try:
            httpx.get(url, auth=auth, timeout=30).raise_for_status()
        except httpx.HTTPError as exc:
            pytest.fail(f"{NOT_RUNNING} ({name} at {url}: {type(exc).__name__}: {exc})")
    return s


@pytest.fixture(scope="session")
def fhir_token(stack: Stack) -> Iterator[Callable[..., str]]:
    """``fhir_token(scope="system/*.rs")``: a SMART Backend Services access token for the stack's FHIR server
    (cached per scope and re-minted before it expires)."""
    keys = read_private_jwks(stack.backend_private_jwks_file)
    clients: dict[str, BackendServicesAuth] = {}

    def get(scope: str = "system/*.rs") -> str:
        if scope not in clients:
            clients[scope] = BackendServicesAuth(stack.token_url, stack.backend_client_id, keys, scope=scope,
                                                timeout_s=30)
        return clients[scope].token()

    yield get
    for c in clients.values():
        c.close()


@pytest.fixture(scope="session")
def fhir_client(stack: Stack, fhir_token: Callable[..., str]) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` on the FHIR base URL carrying a read-and-write backend token (``system/*.cruds``)."""

    def auth(request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {fhir_token('system/*.cruds')}"
        return request

    with httpx.Client(base_url=stack.fhir_base_url + "/", auth=auth, timeout=30,
                      headers={"Accept": "application/fhir+json"}) as client:
        yield client
