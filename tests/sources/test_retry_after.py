from __future__ import annotations

from datetime import UTC, datetime

import pytest

from risk.sources.retry_after import retry_after_s

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "expected"), [
    ("120", 120.0),
    (" 3 ", 3.0),
    ("1.5", 1.5),
    ("0", 0.0),
    ("-4", 0.0),
    ("Mon, 07 Dec 2026 12:00:30 GMT", 30.0),
    ("Mon, 07 Dec 2026 11:59:00 GMT", 0.0),
])
def test_delta_seconds_and_http_dates(header: str, expected: float) -> None:
    assert retry_after_s(header, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("header", [None, "", "   ", "soon", "nan", "inf", "Mon, 99 Foo 2026"])
def test_absent_or_unreadable_is_none(header: str | None) -> None:
    assert retry_after_s(header, now=NOW) is None
