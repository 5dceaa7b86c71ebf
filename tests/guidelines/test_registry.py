"""The calculator registry, the result envelope and the shared JSON handling."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from risk.errors import InvalidInput, NotFound
from risk.guidelines.brock import BrockInput, BrockOutputs, BrockResult
from risk.guidelines.registry import (
    CALCULATORS,
    MODEL_NAMES,
    ItemError,
    format_location,
    get_calculator,
    run_raw,
)
from risk.guidelines.result import abstained, scored
from tests.guidelines.samples import EXPECTED, SAMPLES


def test_public_names_are_exactly_the_issue_list() -> None:
    assert MODEL_NAMES == ("plcom2012", "plcom2012-norace", "brock", "mayo", "va", "lungrads", "fleischner",
                           "eligibility", "vdt")
    with pytest.raises(NotFound, match="known: plcom2012"):
        get_calculator("plco")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_calculator_schema_validates_its_sample_and_computes(name: str) -> None:
    calc = CALCULATORS[name]
    schema = calc.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(SAMPLES[name], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**SAMPLES[name], "unexpected_field": 1}, schema)
    result = calc.run(SAMPLES[name])
    doc = result.to_json_dict()
    assert set(doc) == {"model", "version", "citation", "inputs", "outputs", "abstentions", "warnings"}
    assert doc["model"] == name and doc["version"] == calc.version and doc["citation"] == calc.citation
    field, expected = EXPECTED[name]
    got = doc["outputs"][field]
    assert got == (pytest.approx(expected, abs=5e-5) if isinstance(expected, float) else expected)
    orjson.dumps(doc)  # JSON-serialisable


def test_envelope_outputs_exactly_when_not_abstaining() -> None:
    data = BrockInput.model_validate(SAMPLES["brock"])
    outputs = BrockOutputs(probability=0.1, linear_predictor=-2.2, contributions={})
    with pytest.raises(ValueError, match="outputs"):
        BrockResult(model="brock", version="v", citation="c", inputs={}, outputs=outputs, abstentions=("x",))
    with pytest.raises(ValueError, match="outputs"):
        BrockResult(model="brock", version="v", citation="c", inputs={}, outputs=None)
    with pytest.raises(ValueError, match="reasons"):
        abstained(BrockResult, model="brock", version="v", citation="c", inputs=data, reasons=[])
    ok = scored(BrockResult, model="brock", version="v", citation="c", inputs=data, outputs=outputs)
    assert not ok.abstained and ok.inputs["nodule_size_mm"] == 10


@pytest.mark.parametrize(("loc", "text"), [
    ((), "input"), (("age",), "age"), ((3, "age"), "[3].age"),
    (("findings", 0, "nodule", "priors", 1, "interval_days"), "findings[0].priors[1].interval_days"),
    ((2, "findings", 0, "airway_nodule", "change"), "[2].findings[0].change"),
])
def test_locations_read_like_json_paths(loc: tuple[str | int, ...], text: str) -> None:
    assert format_location(loc) == text


def test_run_raw_object_array_and_item_errors() -> None:
    calc = get_calculator("va")
    single = run_raw(calc, orjson.dumps(SAMPLES["va"]))
    assert not single.batch and not single.errors
    batch = run_raw(calc, orjson.dumps([SAMPLES["va"], {"age": 62}, 7, SAMPLES["va"]]))
    assert batch.batch and [isinstance(i, ItemError) for i in batch.items] == [False, True, True, False]
    bad = [i for i in batch.items if isinstance(i, ItemError)]
    assert bad[0].index == 1 and {p.field for p in bad[0].problems} == {"[1].ever_smoker",
                                                                       "[1].nodule_diameter_mm"}
    assert bad[1].index == 2 and bad[1].problems[0].field == "[2]"
    docs = orjson.loads(batch.to_json_bytes())
    assert docs[1] == {"index": 1, "errors": [
        {"field": "[1].ever_smoker", "loc": [1, "ever_smoker"], "message": "Field required"},
        {"field": "[1].nodule_diameter_mm", "loc": [1, "nodule_diameter_mm"], "message": "Field required"}]}


@pytest.mark.parametrize("raw", [b"", b"   ", b"{not json", b"[1, 2", b"42", b'"text"', b"{} trailing"])
def test_run_raw_rejects_what_is_not_an_object_or_array(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        run_raw(get_calculator("va"), raw)
    assert info.value.field == "input"
