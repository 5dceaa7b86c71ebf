"""Pieces every calculator shares: the strict input base class, the logistic link, field-naming errors and
decimal rounding."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

FIELD_ERROR_TYPE = "field_error"
"""Error type of cross-field checks; the error's ``ctx["field"]`` names the offending field."""


class CalculatorInput(BaseModel):
    """Base of every calculator input: immutable, unknown fields rejected, strict types (no "62" for 62, no 1
    for true; ints are accepted where floats are expected). Enum fields set ``strict=False`` so Python callers
    may pass the string value."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error for a cross-field check (``model_validator``) that still names one field.

    Pydantic reports model-level errors with an empty location; callers (CLI, HTTP) read
    ``ctx["field"]`` to put the field back into the location.
    """
    return PydanticCustomError(FIELD_ERROR_TYPE, "{field}: {message}", {"field": field, "message": message})


def error_location(error: dict[str, Any]) -> tuple[str | int, ...]:
    """The location of one pydantic error, with the field of a :func:`field_error` restored."""
    loc = tuple(error.get("loc", ()))
    ctx = error.get("ctx") or {}
    if error.get("type") == FIELD_ERROR_TYPE and "field" in ctx:
        return (*loc, *(int(p) if p.isdigit() else p for p in str(ctx["field"]).split(".")))
    return loc


def error_message(error: dict[str, Any]) -> str:
    """The message of one pydantic error without the field prefix that :func:`field_error` adds."""
    ctx = error.get("ctx") or {}
    if error.get("type") == FIELD_ERROR_TYPE and "message" in ctx:
        return str(ctx["message"])
    return str(error.get("msg", "invalid value"))


def logistic(x: float) -> float:
    """exp(x) / (1 + exp(x)), computed without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


ONE_DECIMAL = Decimal("0.1")
WHOLE = Decimal("1")


def to_decimal(value: float | int | Decimal) -> Decimal:
    """The decimal a person typed: ``6.2`` becomes ``Decimal("6.2")``, not the binary float's expansion."""
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)


def round_half_up(value: Decimal, quantum: Decimal) -> Decimal:
    """Round to ``quantum`` (``Decimal("0.1")``, ``Decimal("1")``) with ties away from zero."""
    return value.quantize(quantum, rounding=ROUND_HALF_UP)


def mean_of_axes(long_axis_mm: float, short_axis_mm: float, quantum: Decimal) -> Decimal:
    """(long + short) / 2 in decimal arithmetic, rounded half up to ``quantum``."""
    return round_half_up((to_decimal(long_axis_mm) + to_decimal(short_axis_mm)) / 2, quantum)
