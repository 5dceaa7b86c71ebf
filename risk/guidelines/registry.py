"""The calculators by public name: input model, compute function, and the shared JSON handling that the CLI
(``risk calc MODEL``) and the HTTP API (``POST /api/calculators/{MODEL}``) both use.

JSON in: one object, or an array of objects (a batch). Each item is validated and computed on its own: a bad
item yields an :class:`ItemError` naming its index and field and does not stop the others. The CLI prints
every item's result or error and exits 2 if any failed; the HTTP API answers 422 naming every bad item's
index and field when any failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from risk.errors import InvalidInput, NotFound
from risk.guidelines import brock, eligibility, fleischner, growth, lungrads, mayo, plcom2012, va
from risk.guidelines._common import error_location, error_message
from risk.guidelines.lungrads_inputs import LungRadsInput
from risk.guidelines.result import ModelResult

MAX_BATCH_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class Calculator:
    """One public calculator."""

    name: str
    title: str
    input_model: type[BaseModel]
    output_model: type[ModelResult[Any]]
    compute: Callable[[Any], ModelResult[Any]]
    version: str
    citation: str

    def input_schema(self) -> dict[str, Any]:
        """The input JSON Schema (what ``risk calc MODEL --schema`` prints)."""
        return self.input_model.model_json_schema()

    def run(self, data: dict[str, Any] | BaseModel) -> ModelResult[Any]:
        """Validate a Python mapping (or take a validated input) and compute; bad input raises
        :class:`~risk.errors.InvalidInput` naming the field."""
        if not isinstance(data, BaseModel):
            try:
                data = self.input_model.model_validate(data)
            except ValidationError as exc:
                raise _invalid(exc.errors(include_url=False), prefix=()) from None
        return self.compute(data)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One validation problem: where (JSON path, with the batch index first) and what."""

    loc: tuple[str | int, ...]
    message: str
    type: str

    @property
    def field(self) -> str:
        return format_location(self.loc)


@dataclass(frozen=True, slots=True)
class ItemError:
    """A batch item (or the single object) that could not be computed."""

    index: int | None
    problems: tuple[FieldProblem, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {"index": self.index,
                "errors": [{"field": p.field, "loc": list(p.loc), "message": p.message} for p in self.problems]}

    def one_line(self) -> str:
        return "; ".join(f"{p.field}: {p.message}" for p in self.problems)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Results of a JSON request: one entry per item, each a result or an error."""

    batch: bool
    items: tuple[ModelResult[Any] | ItemError, ...]

    @property
    def errors(self) -> tuple[ItemError, ...]:
        return tuple(i for i in self.items if isinstance(i, ItemError))

    def to_json_bytes(self, *, indent: bool = False) -> bytes:
        docs = [i.to_json_dict() if isinstance(i, ItemError) else i.model_dump(mode="json") for i in self.items]
        option = orjson.OPT_INDENT_2 if indent else 0
        return orjson.dumps(docs if self.batch else docs[0], option=option)


def format_location(loc: tuple[str | int, ...]) -> str:
    """``("findings", 0, "nodule", "priors", 1, "interval_days")`` → ``findings[0].priors[1].interval_days``
    (a discriminated union's tag is dropped); a batch index comes first as ``[3]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS:
            continue
        else:
            out += f".{part}" if out else part
    return out or "input"


_UNION_TAGS = frozenset({"nodule", "airway_nodule", "atypical_cyst"})


def _problems(errors: list[Any], prefix: tuple[str | int, ...]) -> tuple[FieldProblem, ...]:
    return tuple(FieldProblem(loc=(*prefix, *error_location(e)), message=error_message(e), type=str(e.get("type")))
                 for e in errors)


def _invalid(errors: list[Any], prefix: tuple[str | int, ...]) -> InvalidInput:
    problems = _problems(errors, prefix)
    first = problems[0]
    rest = "".join(f"; {p.field}: {p.message}" for p in problems[1:])
    return InvalidInput(first.field, first.message + rest)


def parse_json_document(raw: bytes | str) -> Any:
    """Parse the request body; invalid JSON raises :class:`InvalidInput` on field ``input``."""
    if isinstance(raw, str):
        raw = raw.encode()
    if not raw.strip():
        raise InvalidInput("input", "empty: expected a JSON object or an array of objects")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("input", f"invalid JSON: {exc}") from None


def run_raw(calculator: Calculator, raw: bytes | str) -> BatchOutcome:
    """Validate and compute a raw JSON body (object or array). A single object is validated straight from
    its bytes (the fast path); invalid JSON raises :class:`InvalidInput` on field ``input``."""
    body = raw.encode() if isinstance(raw, str) else raw
    if body.lstrip()[:1] == b"{":
        try:
            data = calculator.input_model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if any(e.get("type") == "json_invalid" for e in errors):
                parse_json_document(body)  # raises with orjson's message
            return BatchOutcome(batch=False, items=(ItemError(None, _problems(errors, ())),))
        return BatchOutcome(batch=False, items=(calculator.compute(data),))
    return run_json(calculator, parse_json_document(body))


def run_json(calculator: Calculator, document: Any) -> BatchOutcome:
    """Validate and compute a parsed JSON document: an object, or an array of objects."""
    if isinstance(document, dict):
        return BatchOutcome(batch=False, items=(_run_item(calculator, document, None),))
    if isinstance(document, list):
        if len(document) > MAX_BATCH_ITEMS:
            raise InvalidInput("input", f"a batch holds at most {MAX_BATCH_ITEMS} items, got {len(document)}")
        return BatchOutcome(batch=True, items=tuple(_run_item(calculator, item, i)
                                                    for i, item in enumerate(document)))
    raise InvalidInput("input", f"expected a JSON object or an array of objects, got {type(document).__name__}")


def _run_item(calculator: Calculator, item: Any, index: int | None) -> ModelResult[Any] | ItemError:
    prefix: tuple[str | int, ...] = () if index is None else (index,)
    if not isinstance(item, dict):
        return ItemError(index, (FieldProblem(prefix, f"expected a JSON object, got {type(item).__name__}",
                                              "model_type"),))
    try:
        data = calculator.input_model.model_validate_json(orjson.dumps(item))
    except ValidationError as exc:
        return ItemError(index, _problems(exc.errors(include_url=False), prefix))
    return calculator.compute(data)


def _calc(name: str, title: str, module: Any, input_model: type[BaseModel], output_model: type[ModelResult[Any]],
          compute: Callable[[Any], ModelResult[Any]], *, version: str | None = None,
          citation: str | None = None) -> Calculator:
    return Calculator(name=name, title=title, input_model=input_model, output_model=output_model, compute=compute,
                      version=version or module.MODEL_VERSION, citation=citation or module.CITATION)


CALCULATORS: dict[str, Calculator] = {c.name: c for c in (
    _calc("plcom2012", "PLCOm2012 six-year lung-cancer risk", plcom2012, plcom2012.Plcom2012Input,
          plcom2012.Plcom2012Result, plcom2012.compute_plcom2012),
    _calc("plcom2012-norace", "PLCOm2012noRace six-year lung-cancer risk", plcom2012,
          plcom2012.Plcom2012NoRaceInput, plcom2012.Plcom2012Result, plcom2012.compute_plcom2012_norace,
          version=plcom2012.NORACE_MODEL_VERSION, citation=plcom2012.NORACE_CITATION),
    _calc("brock", "Brock (PanCan) nodule malignancy, full model 2b", brock, brock.BrockInput, brock.BrockResult,
          brock.compute_brock),
    _calc("mayo", "Mayo Clinic solitary-nodule malignancy", mayo, mayo.MayoInput, mayo.MayoResult,
          mayo.compute_mayo),
    _calc("va", "VA solitary-nodule malignancy", va, va.VaInput, va.VaResult, va.compute_va),
    _calc("lungrads", "ACR Lung-RADS v2022 category and management", lungrads, LungRadsInput,
          lungrads.LungRadsResult, lungrads.compute_lungrads),
    _calc("fleischner", "Fleischner Society 2017 incidental-nodule management", fleischner,
          fleischner.FleischnerInput, fleischner.FleischnerResult, fleischner.compute_fleischner),
    _calc("eligibility", "Screening eligibility: USPSTF 2021, CMS 2022, ACS 2023", eligibility,
          eligibility.EligibilityInput, eligibility.EligibilityResult, eligibility.compute_eligibility),
    _calc("vdt", "Volume doubling time and NELSON growth", growth, growth.VdtInput, growth.VdtResult,
          growth.compute_vdt),
)}

MODEL_NAMES: tuple[str, ...] = tuple(CALCULATORS)


def get_calculator(name: str) -> Calculator:
    """The calculator called ``name``; :class:`~risk.errors.NotFound` for an unknown name."""
    try:
        return CALCULATORS[name]
    except KeyError:
        raise NotFound(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None
