"""``Retry-After`` (RFC 9110 §10.2.3), read the same way by every HTTP client of the service (FHIR REST, Bulk
export, DICOMweb, the cohort loader).

The header holds delta-seconds or an HTTP date. Servers in the wild also send decimals ("1.5"), which are
accepted; a date in the past means "now" (0 s). Anything unreadable is ``None``: the caller then falls back to
its own backoff rather than guessing.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait before retrying, or None when the header is absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
