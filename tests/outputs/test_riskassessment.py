"""Model outputs as FHIR R4 RiskAssessment: probability as a fraction 0-1 with the percentage in the rationale."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment

from risk import codes
from risk.assess import assess
from risk.domain import RiskEstimate
from risk.errors import InvalidInput
from risk.outputs.riskassessment import build_risk_assessment, rationale, risk_assessment_json, risk_assessments_json
from tests.assess.builders import observation, snapshot, study, track
from tests.cds.conftest import assert_no_empty

WHEN = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)


def _assessment():  # type: ignore[no-untyped-def]
    day = date(2025, 1, 10)
    s = snapshot(studies=(study("1.2.3", day),), tracks=(track("n1", observation("1.2.3", day, 9.0)),))
    return assess(s, generated_at=WHEN)


def test_plco_risk_assessment_is_valid_r4() -> None:
    a = _assessment()
    plco = a.risk("plcom2012")
    assert plco is not None
    resource = risk_assessment_json(a, plco, resource_id="ra-1")
    assert_no_empty(resource)
    model: Any = RiskAssessment.model_validate(resource)
    assert model.status == "final" and model.subject.reference == "Patient/p1"
    prediction = model.prediction[0]
    assert float(prediction.probabilityDecimal) == pytest.approx(plco.probability, abs=1e-6)
    assert 0 < float(prediction.probabilityDecimal) < 1
    assert prediction.whenRange.high.value == 6 and prediction.whenRange.high.code == codes.UNIT_YEAR
    assert f"{plco.probability * 100:.1f}%" in prediction.rationale
    assert prediction.outcome.coding[0].code == codes.LUNG_CANCER.code
    assert model.method.coding[0].code == "plcom2012" and model.method.coding[0].version == plco.model_version
    refs = {b.reference for b in model.basis if b.reference}
    assert {"Patient/p1", "Observation/smk", "ImagingStudy/is-1.2.3"} <= refs
    dicom = [b for b in model.basis if b.identifier is not None]
    assert dicom and dicom[0].identifier.system == codes.DICOM_UID
    assert model.occurrenceDateTime.isoformat().startswith("2025-06-02T09:30")


def test_brock_names_the_nodule_and_has_no_horizon() -> None:
    a = _assessment()
    brock = next(r for r in a.risks if r.model == "brock")
    resource = build_risk_assessment(a, brock)
    assert resource.prediction[0].whenRange is None
    assert resource.prediction[0].rationale.startswith("Nodule n1: malignancy probability")
    assert resource.code.text == "Pulmonary nodule malignancy risk"
    assert [r["method"]["coding"][0]["code"] for r in risk_assessments_json(a)] == ["plcom2012", "brock"]


def test_learned_synthetic_model_is_preliminary_and_says_so() -> None:
    a = _assessment()
    learned = RiskEstimate(model="fusion-x", model_version="1.0", outcome="lung cancer", probability=0.042,
                           horizon_years=6.0, citation="model card", interval=(0.03, 0.06), learned=True,
                           trained_on_synthetic_data=True, calibrator="isotonic")
    a2 = replace(a, risks=(*a.risks, learned))
    resource = build_risk_assessment(a2, learned)
    assert resource.status == "preliminary"
    assert any("synthetic" in n.text for n in resource.note)
    assert "interval 3.0%-6.0%" in rationale(learned)


def test_estimate_must_belong_to_the_assessment() -> None:
    a = _assessment()
    other = RiskEstimate(model="x", model_version="1", outcome="o", probability=0.1, horizon_years=None,
                         citation="c")
    with pytest.raises(InvalidInput) as info:
        risk_assessment_json(a, other)
    assert info.value.field == "estimate"
