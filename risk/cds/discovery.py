"""CDS Hooks 2.0 discovery: the service definitions and their prefetch templates.

One service id, ``lung-risk``, is listed for ``patient-view``, ``order-select`` and ``order-sign`` (the spec's
"update stale guidance": a client replaces the cards of an earlier hook with those of the same id).

Prefetch templates are those of the snapshot queries (:data:`risk.sources.fhir.PREFETCH_TEMPLATES`) restricted to
the CDS Hooks 2.0 prefetch query subset: instance read, type-level search, ``subject=Patient/{{context.patientId}}``
(or ``patient=``) references, token parameters (with equality, comma OR lists, optionally ``:in``), date parameters with
``eq|lt|gt|ge|le`` prefixes, ``_count`` and ``_sort``. ``_include`` is outside that subset, so the ImagingStudy
template asks for the studies only (their DICOMweb endpoints come from the service's PACS settings).
:func:`template_problems` checks a template against the subset; a test runs it over every published template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from risk.config import Settings
from risk.sources.fhir import PATIENT_ID_TOKEN, PREFETCH_TEMPLATES

SERVICE_ID: Final = "lung-risk"
PATIENT_VIEW: Final = "patient-view"
ORDER_SELECT: Final = "order-select"
ORDER_SIGN: Final = "order-sign"
HOOKS: Final = (PATIENT_VIEW, ORDER_SELECT, ORDER_SIGN)

# Context fields per hook (HL7 cds-hooks-library): required ones, and those usable as prefetch tokens.
REQUIRED_CONTEXT: Final[Mapping[str, tuple[str, ...]]] = {
    PATIENT_VIEW: ("userId", "patientId"),
    ORDER_SELECT: ("userId", "patientId", "selections", "draftOrders"),
    ORDER_SIGN: ("userId", "patientId", "draftOrders"),
}
TOKEN_CONTEXT: Final[Mapping[str, tuple[str, ...]]] = {
    PATIENT_VIEW: ("userId", "patientId", "encounterId"),
    ORDER_SELECT: ("userId", "patientId", "encounterId"),
    ORDER_SIGN: ("userId", "patientId", "encounterId"),
}
USER_TOKENS: Final = ("userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId")

CDS_PREFETCH_TEMPLATES: Final[Mapping[str, str]] = {
    **{k: v for k, v in PREFETCH_TEMPLATES.items() if k != "imagingStudies"},
    "imagingStudies": f"ImagingStudy?subject=Patient/{PATIENT_ID_TOKEN}",
}
"""The prefetch templates this service publishes (2.0 query subset; see the module docstring)."""

TITLES: Final[Mapping[str, str]] = {
    PATIENT_VIEW: "Lung cancer screening and nodule follow-up",
    ORDER_SELECT: "Chest CT order check",
    ORDER_SIGN: "Chest CT order check (signing)",
}
DESCRIPTIONS: Final[Mapping[str, str]] = {
    PATIENT_VIEW: (
        "Lung cancer screening eligibility (USPSTF 2021, CMS 2022, ACS 2023) without a recent LDCT; tracked "
        "pulmonary nodules due or overdue for follow-up by Lung-RADS v2022 or Fleischner 2017; high or rising "
        "lung cancer risk (PLCOm2012, Brock, and the fusion model when one is loaded)."),
    ORDER_SELECT: (
        "For chest CT orders being selected: LDCT screening eligibility and the shared decision-making "
        "requirement, follow-up timing against the guideline (too early, due, overdue) and duplicate imaging. "
        "Other orders get no cards."),
    ORDER_SIGN: (
        "For chest CT orders being signed: LDCT screening eligibility and the shared decision-making requirement, "
        "follow-up timing against the guideline and duplicate imaging. Other orders get no cards."),
}
USAGE_REQUIREMENTS: Final = (
    "Reads Patient, Observation, Condition, FamilyMemberHistory and ImagingStudy from prefetch or, for keys not "
    "prefetched, from fhirServer with fhirAuthorization (patient/*.rs or user/*.rs read scopes). Answers 412 "
    "when neither is available.")


def service_definitions(settings: Settings | None = None) -> list[dict[str, Any]]:
    """The ``services`` array of the discovery response (no null or empty values)."""
    del settings
    return [
        {"hook": hook, "title": TITLES[hook], "description": DESCRIPTIONS[hook], "id": SERVICE_ID,
         "prefetch": dict(CDS_PREFETCH_TEMPLATES), "usageRequirements": USAGE_REQUIREMENTS}
        for hook in HOOKS
    ]


def discovery_document(settings: Settings | None = None) -> bytes:
    return orjson.dumps({"services": service_definitions(settings)})


# --- the 2.0 prefetch query subset --------------------------------------------------------------------------
_TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_DATE_VALUE = re.compile(r"^(eq|lt|gt|ge|le)?\d{4}(-\d{2}(-\d{2}(T[0-9:.+\-Z]+)?)?)?$")
_RESOURCE = re.compile(r"^[A-Z][A-Za-z]+$")
_DATE_PARAMS = frozenset({"date", "birthdate", "onset-date", "recorded-date", "started", "authored", "issued",
                          "occurrence", "period", "effective", "abatement-date", "_lastUpdated"})
_REFERENCE_PARAMS = frozenset({"patient", "subject", "encounter", "requester", "performer", "_id"})


def template_problems(template: str, hook: str) -> list[str]:
    """Why ``template`` is not a valid CDS Hooks 2.0 prefetch template for ``hook`` (empty list: valid)."""
    problems: list[str] = []
    for match in _TOKEN.finditer(template):
        token = match.group(1)
        if token in USER_TOKENS:
            continue
        if not token.startswith("context."):
            problems.append(f"token {{{{{token}}}}} is neither context.* nor a user identifier")
            continue
        name = token.removeprefix("context.")
        if "." in name or name not in TOKEN_CONTEXT.get(hook, ()):
            problems.append(f"token {{{{{token}}}}} is not a first-level prefetch-token context field of {hook}")
    if template.count("{{") != template.count("}}"):
        problems.append("unbalanced token delimiters")
    path, _, query = template.partition("?")
    parts = path.split("/")
    if not _RESOURCE.match(parts[0]) or len(parts) > 2:
        problems.append(f"{path!r} is not a resource type or an instance read")
    if len(parts) == 2 and query:
        problems.append("an instance read takes no parameters")
    for name, value in parse_qsl(query, keep_blank_values=True):
        base, _, modifier = name.partition(":")
        if base in ("_count",):
            if not value.isdigit():
                problems.append("_count must be a number")
        elif base == "_sort":
            if not re.fullmatch(r"-?[a-z_][a-z0-9_-]*(,-?[a-z_][a-z0-9_-]*)*", value):
                problems.append(f"_sort={value!r} is not a list of parameter names")
        elif base.startswith("_") and base != "_id":
            problems.append(f"{base} is outside the prefetch query subset")
        elif base in _DATE_PARAMS:
            if modifier or not (_DATE_VALUE.match(value) or _TOKEN.fullmatch(value)):
                problems.append(f"date parameter {name}={value!r} must use eq|lt|gt|ge|le only")
        elif base in _REFERENCE_PARAMS:
            if modifier:
                problems.append(f"reference parameter {name} must not use a modifier")
        elif modifier not in ("", "in"):
            problems.append(f"token parameter {name} may only use the :in modifier")
        if "{{" in value and not _TOKEN.fullmatch(value.split("/")[-1]) and not _TOKEN.fullmatch(value):
            problems.append(f"parameter {name} mixes a token with other text")
    return problems
