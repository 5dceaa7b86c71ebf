"""``risk calc MODEL``: JSON on stdin → JSON on stdout; bad input → exit 2 naming the field."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest

from risk.cli import main
from risk.guidelines.registry import MODEL_NAMES
from tests.guidelines.samples import EXPECTED, SAMPLES

REPO = Path(__file__).resolve().parents[2]


def calc(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
         stdin: bytes = b"") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, write_through=True))
    code = main(["calc", *args])
    sys.stdout.flush()
    return code, buffer.getvalue().decode(), capsys.readouterr().err


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_one_object_in_one_result_out(model: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = calc(monkeypatch, capsys, [model], orjson.dumps(SAMPLES[model]))
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["model"] == model and doc["citation"] and doc["inputs"] and doc["abstentions"] == []
    field, expected = EXPECTED[model]
    assert doc["outputs"][field] == (pytest.approx(expected, abs=5e-5) if isinstance(expected, float) else expected)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_schema_flag_prints_the_input_schema(model: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = calc(monkeypatch, capsys, [model, "--schema"])
    assert code == 0
    schema = orjson.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(SAMPLES[model], schema)
    assert schema["additionalProperties"] is False


def test_batch_reports_each_item_and_exits_2_if_any_failed(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    good = SAMPLES["brock"]
    batch = [good, {**good, "nodule_size_mm": "big"}, {**good, "nodule_size_mm": 45}]
    code, out, err = calc(monkeypatch, capsys, ["brock", "--compact"], orjson.dumps(batch))
    assert code == 2
    docs = orjson.loads(out)
    assert docs[0]["outputs"]["probability"] == pytest.approx(0.1892, abs=5e-5)
    assert docs[1] == {"index": 1, "errors": [{"field": "[1].nodule_size_mm", "loc": [1, "nodule_size_mm"],
                                               "message": "Input should be a valid number"}]}
    assert docs[2]["outputs"] is None and "1-30 mm" in docs[2]["abstentions"][0]  # abstaining is not an error
    assert err.strip() == "risk: invalid input: [1].nodule_size_mm: Input should be a valid number"


def test_batch_of_good_items_exits_0(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = calc(monkeypatch, capsys, ["va"], orjson.dumps([SAMPLES["va"]] * 3))
    assert code == 0 and len(orjson.loads(out)) == 3


@pytest.mark.parametrize(("model", "stdin", "field"), [
    ("plcom2012", {**SAMPLES["plcom2012"], "age": 130}, "age"),  # out of range
    ("plcom2012", {k: v for k, v in SAMPLES["plcom2012"].items() if k != "bmi"}, "bmi"),  # missing
    ("plcom2012", {**SAMPLES["plcom2012"], "race_ethnicity": "other"}, "race_ethnicity"),  # unknown value
    ("brock", {**SAMPLES["brock"], "spiculation": "yes"}, "spiculation"),  # wrong type
    ("brock", {**SAMPLES["brock"], "nodule_size_mm": -3}, "nodule_size_mm"),  # out of range size
    ("eligibility", {"age": 60, "smoking_status": "former", "pack_years": 30}, "years_since_quit"),
    ("lungrads", {"findings": [{"status": "baseline", "composition": "part_solid", "mean_diameter_mm": 9}]},
     "findings[0].solid_component"),
    ("vdt", {"interval_days": 30, "d1_mm": 5}, "d2_mm"),
])
def test_bad_input_exits_2_with_one_line_naming_the_field(model: str, stdin: dict[str, object], field: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = calc(monkeypatch, capsys, [model], orjson.dumps(stdin))
    assert code == 2 and out == ""
    assert err.startswith(f"risk: invalid input: {field}: ") and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("stdin", [b"", b"{oops", b"[1,", b"3"])
def test_invalid_json_exits_2(stdin: bytes, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = calc(monkeypatch, capsys, ["va"], stdin)
    assert code == 2 and err.startswith("risk: invalid input: input: ")


def test_console_script_end_to_end_without_traceback() -> None:
    # The real process: a result on stdout; bad JSON → exit 2, one line on stderr, no traceback.
    risk = [sys.executable, "-m", "risk", "calc"]
    ok = subprocess.run([*risk, "va", "--compact"], input=orjson.dumps(SAMPLES["va"]), capture_output=True,
                        timeout=60, cwd=REPO)
    assert ok.returncode == 0 and orjson.loads(ok.stdout)["model"] == "va"
    bad = subprocess.run([*risk, "va"], input=b'{"age": 62,', capture_output=True, timeout=60, cwd=REPO)
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr and bad.stderr.count(b"\n") == 1


def test_unknown_model_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        calc(monkeypatch, capsys, ["nomodel"], b"{}")
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
