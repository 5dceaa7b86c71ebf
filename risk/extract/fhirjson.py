"""Targeted reading of FHIR JSON as plain dicts (no model validation on the hot path).

Full ``fhir.resources`` validation costs 50-80× the JSON parse (reference/performance.md §2), so ingestion
walks the few fields it needs and checks their JSON types itself. Every helper here returns None for a
missing or wrongly-typed field instead of raising; callers record the reason as an IngestionNote.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from risk.domain.provenance import SourceKind, SourceRef

Resource = Mapping[str, Any]



def clinical_date(value: object) -> date | None:
    """The calendar date of a FHIR date/dateTime/instant, as written (no time-zone arithmetic).

    "2020" → 2020-01-01 and "2020-05" → 2020-05-01 (partial dates: first day); "2020-05-07T23:30:00-05:00"
    → 2020-05-07. Anything else → None. risk/features/bulk.py applies the same rule in polars.
    """
    if not isinstance(value, str):
        return None
    n = len(value)
    if n == 4:
        text = value + "-01-01"
    elif n == 7:
        text = value + "-01"
    elif n >= 10:
        text = value[:10]
    else:
        return None
    # Same rule as the regex [0-9]{4}-[0-9]{2}-[0-9]{2} + date.fromisoformat, without the regex (hot path):
    # fromisoformat takes exactly YYYY-MM-DD of ASCII digits at this length once the dashes are where they belong
    # (its other 10-character forms, the ISO week dates, have no dash at index 7), and rejects impossible dates.
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def text_field(resource: Mapping[str, Any], name: str) -> str | None:
    value = resource.get(name)
    return value if isinstance(value, str) and value else None


def obj(resource: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = resource.get(name)
    return value if isinstance(value, dict) else None


def items(resource: Mapping[str, Any], name: str) -> list[Any]:
    value = resource.get(name)
    return value if isinstance(value, list) else []


def codings(concept: object) -> Iterator[tuple[str | None, str | None]]:
    """(system, code) of every well-formed coding in a CodeableConcept."""
    if not isinstance(concept, dict):
        return
    coding = concept.get("coding")
    if not isinstance(coding, list):
        return
    for c in coding:
        if isinstance(c, dict):
            system, code = c.get("system"), c.get("code")
            yield (system if isinstance(system, str) else None, code if isinstance(code, str) else None)


def coded_value(concept: object) -> str | None:
    """The code of the first coding of a CodeableConcept (for status-like fields)."""
    for _system, code in codings(concept):
        if code:
            return code
    return None


PATIENT_REFERENCE = r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]*)?$"
"""A Patient reference: ``Patient/id``, an absolute URL ending so, either with ``/_history/version``.
risk/features/bulk.py uses the same pattern in polars."""


def reference_regex(resource_type: str) -> str:
    """:data:`PATIENT_REFERENCE` for another resource type (its group 1 is the id); risk.population.frames uses it
    in polars."""
    return PATIENT_REFERENCE.replace("Patient", re.escape(resource_type))


@functools.lru_cache(maxsize=16)
def _reference_pattern(resource_type: str) -> re.Pattern[str]:
    return re.compile(reference_regex(resource_type))


def reference_id(reference: object, resource_type: str) -> str | None:
    """The id in ``{"reference": ".../Type/id"}`` (relative, absolute or versioned), else None."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    match = _reference_pattern(resource_type).search(ref)
    return match.group(1) if match else None


def resource_key(resource: Resource, fallback: str) -> str:
    """``Type/id`` of a resource (``Type/<fallback>`` when it has no id)."""
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    rtype = rtype if isinstance(rtype, str) and rtype else "Resource"
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype}/{fallback}"


def source_ref(reference: str, effective: date | None = None) -> SourceRef:
    return SourceRef(SourceKind.FHIR, reference, effective)
