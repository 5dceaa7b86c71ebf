"""``risk serve`` prints the URLs it serves before it starts uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from risk.cli.serve import run, served_urls
from risk.config import Environment, load_settings


def test_demo_lists_the_landing_page_and_the_simulated_ehr() -> None:
    settings = load_settings(public_base_url="http://127.0.0.1:18999/")
    assert settings.environment is Environment.DEMO
    assert served_urls(settings) == [
        ("Landing page", "http://127.0.0.1:18999/"), ("Simulated EHR", "http://127.0.0.1:18999/demo/ehr"),
        ("SMART app launch", "http://127.0.0.1:18999/app/launch"),
        ("CDS Hooks discovery", "http://127.0.0.1:18999/cds-services"),
        ("Coordinator worklist", "http://127.0.0.1:18999/worklist/"), ("API docs", "http://127.0.0.1:18999/docs")]
    labels = [label for label, _ in served_urls(load_settings(environment="test"))]
    assert "Landing page" not in labels and "Simulated EHR" not in labels and "SMART app launch" in labels


def test_urls_are_printed_before_uvicorn_starts(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: str, **kwargs: Any) -> None:
        seen["printed_before"] = capsys.readouterr().out
        seen.update(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("RISK_PUBLIC_BASE_URL", "http://127.0.0.1:18998")
    assert run(argparse.Namespace(host=None, port=18998, workers=1)) == 0
    out = seen["printed_before"]
    assert out.startswith("risk serve: serving on http://127.0.0.1:18998 (demo, synthetic data)")
    assert "Simulated EHR         http://127.0.0.1:18998/demo/ehr" in out
    assert seen["port"] == 18998 and seen["host"] == "127.0.0.1"
