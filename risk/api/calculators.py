"""``POST /api/calculators/{MODEL}``: the published models and guidelines over HTTP.

One route per model, so each model's input and result schemas appear in the OpenAPI document. The body is
the same JSON as ``risk calc MODEL`` reads: one object (→ one result) or an array (→ an array of results).
Bad input answers 422 with ``detail`` entries whose ``loc`` names the field (``["body", "age"]``; in a batch
``["body", 3, "age"]``); any bad item fails the whole request and every bad item is listed. An unknown model
answers 404. ``GET /api/calculators`` lists the models with their versions and citations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from risk.errors import InvalidInput
from risk.guidelines.registry import CALCULATORS, MODEL_NAMES, BatchOutcome, Calculator, run_raw
from risk.responses import JSONBytesResponse

PREFIX = "/api/calculators"



class CalculatorResponse(JSONBytesResponse, JSONResponse):
    """orjson-rendered JSON (:class:`JSONBytesResponse`) that FastAPI also recognises as JSON, so the
    response schemas declared below are not overwritten with ``{"type": "string"}`` in the OpenAPI document."""


router = APIRouter(prefix=PREFIX, tags=["calculators"], default_response_class=CalculatorResponse)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with its ``$defs`` substituted in place, so it can sit anywhere in an OpenAPI document
    (``#/$defs/...`` pointers would resolve against the document root). The calculators' schemas are not
    recursive."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {**walk(defs[ref.removeprefix("#/$defs/")]),
                          **{k: walk(v) for k, v in node.items() if k != "$ref"}}
                return merged
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result = walk(schema)
    assert isinstance(result, dict)
    return result


def _one_or_many(schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "array", "items": schema, "description": f"A batch of {what}."}]}


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "array", "items": {
        "type": "object",
        "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                       "msg": {"type": "string"}, "type": {"type": "string"}, "field": {"type": "string"}},
    }}},
}


def _error_response(outcome: BatchOutcome) -> CalculatorResponse:
    detail = [{"loc": ["body", *p.loc], "msg": p.message, "type": p.type, "field": p.field}
              for e in outcome.errors for p in e.problems]
    return CalculatorResponse(status_code=422, content={"detail": detail})


def _endpoint(calculator: Calculator) -> Callable[[Request], Awaitable[CalculatorResponse]]:
    async def calculate(request: Request) -> CalculatorResponse:
        body = await request.body()
        try:
            outcome = run_raw(calculator, body)
        except InvalidInput as exc:
            return CalculatorResponse(status_code=422, content={"detail": [
                {"loc": ["body"], "msg": exc.message, "type": "value_error", "field": exc.field}]})
        if outcome.errors:
            return _error_response(outcome)
        return CalculatorResponse(content=outcome.to_json_bytes())

    calculate.__name__ = f"calculate_{calculator.name.replace('-', '_')}"
    return calculate


def _add_route(calculator: Calculator) -> None:
    input_schema = inline_refs(calculator.input_schema())
    result_schema = inline_refs(TypeAdapter(calculator.output_model).json_schema(mode="serialization"))
    router.add_api_route(
        f"/{calculator.name}", _endpoint(calculator), methods=["POST"], summary=calculator.title,
        description=f"{calculator.title}. Version {calculator.version}. Source: {calculator.citation}",
        operation_id=f"calculate_{calculator.name.replace('-', '_')}",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": _one_or_many(input_schema, "inputs")}}}},
        responses={
            200: {"description": "The result (or, for an array, one result per item).",
                  "content": {"application/json": {"schema": _one_or_many(result_schema, "results")}}},
            422: {"description": "Invalid input; each entry's loc names the field (and the batch index).",
                  "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
        },
    )


for _calculator in CALCULATORS.values():
    _add_route(_calculator)


@router.get("", summary="The calculators, their versions and sources")
async def list_calculators() -> CalculatorResponse:
    return CalculatorResponse(content=[
        {"model": c.name, "title": c.title, "version": c.version, "citation": c.citation,
         "path": f"{PREFIX}/{c.name}"} for c in CALCULATORS.values()])


@router.post("/{model}", include_in_schema=False)
async def unknown_calculator(model: str) -> CalculatorResponse:
    return CalculatorResponse(status_code=404, content={
        "detail": f"unknown model {model!r}; known: {', '.join(MODEL_NAMES)}"})
