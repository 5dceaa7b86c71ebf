"""``risk load`` argument handling without servers: the env file, bad arguments (exit 2 naming the argument),
and an unreachable server reported as unavailable (exit 1), never as an empty load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from risk.cli import main
from risk.cli.load import apply_env_file
from risk.errors import InvalidInput
from tests.loading.tiny_cohort import write_tiny_cohort

RISK_KEYS = ("RISK_FHIR__BASE_URL", "RISK_DICOMWEB__URL", "RISK_DICOMWEB__USERNAME", "RISK_DICOMWEB__PASSWORD",
             "RISK_SMART_BACKEND__TOKEN_URL", "RISK_SMART_BACKEND__CLIENT_ID", "RISK_SMART_BACKEND__PRIVATE_JWKS_FILE",
             "RISK_FHIR__BEARER_TOKEN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient RISK_* settings, and whatever a test's env file sets is undone afterwards."""
    for key in RISK_KEYS:
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)


def test_env_file_sets_only_risk_settings(tmp_path: Path) -> None:
    env = tmp_path / "stack.env"
    env.write_text("# comment\n\nRISK_FHIR__BASE_URL=http://127.0.0.1:1/fhir/R4\n"
                   "export RISK_DICOMWEB__USERNAME='pacs'\n"
                   "STACK_SMART_ISSUER=http://x\n")
    apply_env_file(env)
    assert os.environ["RISK_FHIR__BASE_URL"] == "http://127.0.0.1:1/fhir/R4"
    assert os.environ["RISK_DICOMWEB__USERNAME"] == "pacs"
    assert "STACK_SMART_ISSUER" not in os.environ or os.environ["STACK_SMART_ISSUER"] != "http://x"


def test_malformed_env_file_names_the_line(tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    env.write_text("RISK_FHIR__BASE_URL=http://x\nthis is not an assignment\n")
    with pytest.raises(InvalidInput, match="line 2") as err:
        apply_env_file(env)
    assert err.value.field == "--env-file"


@pytest.mark.parametrize(("args", "named"), [
    (["--workers", "0"], "--workers"),
    (["--batch-size", "0"], "--batch-size"),
    (["--fhir-url", "ftp://x"], "--fhir-url"),
    ([], "--fhir-url"),  # nothing to load into
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   args: list[str], named: str) -> None:
    cohort = write_tiny_cohort(tmp_path / "c", "args", n_patients=1, n_slices=1)
    assert main(["load", str(cohort.root), *args]) == 2
    assert named in capsys.readouterr().err


def test_missing_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(tmp_path / "nope"), "--fhir-url", "http://127.0.0.1:1/fhir/R4"]) == 2
    assert "DIR" in capsys.readouterr().err


def test_unreachable_servers_are_reported_unavailable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort = write_tiny_cohort(tmp_path / "c", "down", n_patients=1, n_slices=2)
    code = main(["load", str(cohort.root), "--quiet", "--fhir-url", "http://127.0.0.1:1/fhir/R4",
                 "--dicomweb-url", "http://127.0.0.1:1/dicom-web", "--timeout", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FHIR UNAVAILABLE" in out and "DICOM UNAVAILABLE" in out
    assert "0 loaded" in out
