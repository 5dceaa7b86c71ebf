"""``POST /api/calculators/{MODEL}``: same JSON as the CLI; 422 naming the field; 404 for unknown models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import load_settings
from risk.guidelines.registry import MODEL_NAMES, get_calculator
from tests.guidelines.samples import EXPECTED, SAMPLES


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db: Path = tmp_path_factory.mktemp("api") / "risk.db"
    with TestClient(create_app(load_settings(store={"url": f"sqlite:///{db}"}))) as c:
        yield c


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_object_in_result_out_same_as_the_library(client: TestClient, model: str) -> None:
    r = client.post(f"/api/calculators/{model}", json=SAMPLES[model])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc == get_calculator(model).run(SAMPLES[model]).to_json_dict()
    field, expected = EXPECTED[model]
    assert doc["outputs"][field] == (pytest.approx(expected, abs=5e-5) if isinstance(expected, float) else expected)


def test_array_in_array_out(client: TestClient) -> None:
    r = client.post("/api/calculators/eligibility", json=[SAMPLES["eligibility"], {"age": 55,
                                                                                    "smoking_status": "never"}])
    assert r.status_code == 200
    docs = r.json()
    assert [d["outputs"]["uspstf_2021"]["eligible"] for d in docs] == [True, False]


@pytest.mark.parametrize(("model", "body", "loc"), [
    ("brock", {**SAMPLES["brock"], "age": 15}, ["body", "age"]),
    ("brock", {k: v for k, v in SAMPLES["brock"].items() if k != "sex"}, ["body", "sex"]),
    ("brock", {**SAMPLES["brock"], "nodule_type": "ggo"}, ["body", "nodule_type"]),
    ("plcom2012", {**SAMPLES["plcom2012"], "copd": "no"}, ["body", "copd"]),
    ("plcom2012", {**SAMPLES["plcom2012"], "years_since_quit": None}, ["body", "years_since_quit"]),
    ("lungrads", {"findings": [{"status": "existing", "composition": "solid", "mean_diameter_mm": 7,
                                "priors": [{"interval_days": -1, "mean_diameter_mm": 6}]}]},
     ["body", "findings", 0, "nodule", "priors", 0, "interval_days"]),
    ("fleischner", {"age": 60, "nodules": [{"composition": "solid", "mean_diameter_mm": 7}]}, ["body", "risk"]),
])
def test_bad_input_is_422_naming_the_field(client: TestClient, model: str, body: dict[str, object],
                                           loc: list[object]) -> None:
    r = client.post(f"/api/calculators/{model}", json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


def test_bad_batch_item_is_422_naming_index_and_field(client: TestClient) -> None:
    good = SAMPLES["va"]
    r = client.post("/api/calculators/va", json=[good, good, {**good, "nodule_diameter_mm": "x"}])
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", 2, "nodule_diameter_mm"], "msg": "Input should be a valid number",
                                   "type": "float_type", "field": "[2].nodule_diameter_mm"}]


@pytest.mark.parametrize("body", [b"", b"{", b"[1", b"12"])
def test_invalid_json_is_422_not_500(client: TestClient, body: bytes) -> None:
    r = client.post("/api/calculators/va", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "input"


def test_unknown_model_is_404(client: TestClient) -> None:
    r = client.post("/api/calculators/gail", json={})
    assert r.status_code == 404 and "known: plcom2012" in r.json()["detail"]


def test_listing(client: TestClient) -> None:
    listing = client.get("/api/calculators").json()
    assert [c["model"] for c in listing] == list(MODEL_NAMES)
    assert all(c["version"] and c["citation"] and c["path"].endswith(c["model"]) for c in listing)


def test_every_model_is_in_the_openapi_document_with_its_schemas(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for model in MODEL_NAMES:
        op = doc["paths"][f"/api/calculators/{model}"]["post"]
        body_schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert "$ref" not in str(body_schema)  # self-contained: no #/$defs pointers into the wrong document
        jsonschema.validate(SAMPLES[model], body_schema)
        jsonschema.validate([SAMPLES[model]] * 2, body_schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**SAMPLES[model], "nonsense": True}, body_schema)
        result_schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(client.post(f"/api/calculators/{model}", json=SAMPLES[model]).json(), result_schema)
        assert "422" in op["responses"]
