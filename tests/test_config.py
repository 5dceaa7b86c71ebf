"""Settings: environment variables with one prefix, an optional file, validation naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from risk.config import Environment, load_settings
from risk.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RISK_"):
            monkeypatch.delenv(key)


def test_defaults_are_the_embedded_demo() -> None:
    s = load_settings()
    assert s.environment is Environment.DEMO
    assert s.store.url.startswith("sqlite:///")
    assert s.host == "127.0.0.1"
    assert s.cds.open_mode is False


def test_environment_variables_and_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_PORT", "19000")
    monkeypatch.setenv("RISK_FHIR__BASE_URL", "http://127.0.0.1:18080/fhir/R4")
    monkeypatch.setenv("RISK_FHIR__TIMEOUT_S", "2.5")
    s = load_settings()
    assert s.port == 19000
    assert str(s.fhir.base_url) == "http://127.0.0.1:18080/fhir/R4"
    assert s.fhir.timeout_s == 2.5


@pytest.mark.parametrize(("var", "value", "named"), [
    ("RISK_PORT", "not-a-port", "RISK_PORT"),
    ("RISK_PORT", "70000", "RISK_PORT"),
    ("RISK_FHIR__TIMEOUT_S", "-1", "RISK_FHIR__TIMEOUT_S"),
    ("RISK_STORE__URL", "mysql://x", "RISK_STORE__URL"),
    ("RISK_LOG_LEVEL", "LOUD", "RISK_LOG_LEVEL"),
    ("RISK_POPULATION__ENGINE", "spark", "RISK_POPULATION__ENGINE"),
])
def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.setting == named
    assert named in str(info.value)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="RISK_NO_SUCH_THING"):
        load_settings(no_such_thing=1)


def test_production_refuses_open_cds_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_ENVIRONMENT", "production")
    monkeypatch.setenv("RISK_STORE__URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("RISK_CDS__OPEN_MODE", "true")
    with pytest.raises(ConfigurationError, match="open_mode"):
        load_settings()


def test_production_refuses_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        load_settings()


def test_settings_file_toml_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "risk.toml"
    f.write_text('port = 18999\n[fhir]\nretries = 5\n')
    monkeypatch.setenv("RISK_SETTINGS_FILE", str(f))
    monkeypatch.setenv("RISK_PORT", "18998")
    s = load_settings()
    assert s.fhir.retries == 5
    assert s.port == 18998  # environment wins over the file


def test_settings_file_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "risk.json"
    f.write_text(json.dumps({"cds": {"request_budget_s": 0.8}}))
    monkeypatch.setenv("RISK_SETTINGS_FILE", str(f))
    assert load_settings().cds.request_budget_s == 0.8


def test_unreadable_or_invalid_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_SETTINGS_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match="RISK_SETTINGS_FILE"):
        load_settings()
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    monkeypatch.setenv("RISK_SETTINGS_FILE", str(bad))
    with pytest.raises(ConfigurationError, match="not valid"):
        load_settings()


def test_bad_file_value_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "risk.toml"
    f.write_text('[dicomweb]\ntimeout_s = "soon"\n')
    monkeypatch.setenv("RISK_SETTINGS_FILE", str(f))
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.setting == "RISK_DICOMWEB__TIMEOUT_S"
