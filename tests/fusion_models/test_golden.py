"""Golden predictions: every shipped artifact still gives, through today's runtime and libraries, the predictions it
gave when it was trained (the Sybil regression-test idea, always on). A failure means a code or library change
altered shipped predictions: retrain and ship a new version, or fix the regression."""

from __future__ import annotations

import json

import pytest

from fusion_models.registry import SHIPPED_REGISTRY, Registry
from fusion_models.runtime import load_predictor

SHIPPED = [(a.version, task) for a in Registry(SHIPPED_REGISTRY).list() for task in a.manifest.tasks]


def test_an_artifact_is_shipped() -> None:
    versions = {v for v, _ in SHIPPED}
    assert versions, "no artifact under fusion_models/artifacts"
    for info in Registry(SHIPPED_REGISTRY).list():
        assert info.manifest.trained_on_synthetic_data
        assert "not for clinical use" in (info.path / "MODEL_CARD.md").read_text()
        assert sum(f.stat().st_size for f in info.path.rglob("*") if f.is_file()) < 3_000_000


@pytest.mark.parametrize(("version", "task"), SHIPPED, ids=[f"{v}/{t}" for v, t in SHIPPED])
def test_golden_predictions(version: str, task: str) -> None:
    predictor = load_predictor(SHIPPED_REGISTRY, version, task=task)
    golden = json.loads((SHIPPED_REGISTRY / version / task / "golden.json").read_text())
    assert golden["schema_hash"] == predictor.schema.hash
    assert any(c["probability"] is None for c in golden["cases"]), "golden cases include an abstention"
    for case in golden["cases"]:
        pred = predictor.predict_one(case["features"])
        assert pred.abstain_reason == case["abstain_reason"]
        if case["probability"] is None:
            assert pred.probability is None
            continue
        assert pred.probability == pytest.approx(case["probability"], rel=1e-5, abs=1e-7)
        assert pred.interval == pytest.approx(tuple(case["interval"]), rel=1e-5, abs=1e-7)
        expected = {c["feature"]: c for c in case["contributions"]}
        got = {c.feature: c for c in pred.contributions}
        assert list(got) == list(expected)
        for name, c in got.items():
            assert c.contribution == pytest.approx(expected[name]["contribution"], abs=1e-4)
            assert c.description == expected[name]["description"]
