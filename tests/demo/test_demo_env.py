"""deploy/local/demo.env (what ``make demo`` adds to the stack's settings) is valid and says what the brief says:
the demo environment, the shipped fusion model, plain-http cookies, authenticated CDS (no open mode), a coordinator
program for the worklist; with the demo EHR's key file it loads as the service's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_models.registry import SHIPPED_REGISTRY, Registry
from risk.config import Environment, load_settings
from tests.conftest import read_stack_env
from tests.demo.conftest import ROOT

DEMO_ENV = ROOT / "deploy" / "local" / "demo.env"


def test_demo_env_loads_as_settings(demo_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = read_stack_env(DEMO_ENV)
    assert all(k.startswith("RISK_") for k in values)
    for key, value in {**values, **read_stack_env(demo_keys)}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.environment is Environment.DEMO and settings.synthetic_data
    assert settings.cds.open_mode is False and settings.smart.secure_cookies is False
    assert [i.iss for i in settings.cds.issuers] == [settings.demo.cds_client_iss]
    assert settings.demo.cds_client_jwks_file is not None and settings.demo.cds_client_jwks_file.is_file()
    assert settings.models.version in {a.version for a in Registry(SHIPPED_REGISTRY).list()}
    assert settings.population.programs[0].members == ("Practitioner/coordinator-1",)
