"""Small argument checks shared by the domain value types; every message names the argument."""

from __future__ import annotations

import math
from datetime import date


def require_finite(name: str, value: float, *, low: float | None = None, high: float | None = None,
                   low_inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f'Argument "{name}" must be a number, got {type(value).__name__}.')
    if not math.isfinite(value):
        raise ValueError(f'Argument "{name}" must be finite, got {value!r}.')
    if low is not None and (value < low if low_inclusive else value <= low):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f'Argument "{name}" must be {op} {low}, got {value!r}.')
    if high is not None and value > high:
        raise ValueError(f'Argument "{name}" must be <= {high}, got {value!r}.')
    return float(value)


def optional_finite(name: str, value: float | None, *, low: float | None = None, high: float | None = None,
                    low_inclusive: bool = True) -> float | None:
    if value is None:
        return None
    return require_finite(name, value, low=low, high=high, low_inclusive=low_inclusive)


def require_text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'Argument "{name}" must be a non-empty string.')
    return value


def require_date(name: str, value: date | None, *, optional: bool = False) -> None:
    if value is None:
        if optional:
            return
        raise ValueError(f'Argument "{name}" is required.')
    if not isinstance(value, date):
        raise TypeError(f'Argument "{name}" must be a datetime.date, got {type(value).__name__}.')
