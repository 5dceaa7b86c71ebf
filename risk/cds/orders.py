"""Chest CT orders in ``context.draftOrders`` (order-select, order-sign), by targeted parsing.

A ServiceRequest is a chest CT order when one of its ``code.coding`` entries is a chest CT procedure code
(:data:`risk.codes.CHEST_CT_ORDER_CODES`: CPT 71250/71260/71270/71271, HCPCS G0297; CPT and HCPCS also
recognised by their HL7 OIDs) or LOINC 24627-2 "CT Chest". CPT 71271 and HCPCS G0297 make it a *screening* LDCT
order. Orders of any other kind are ignored (no card). Cancelled, completed and entered-in-error requests are
ignored (order-sign 1.1 may carry active revised orders, which are checked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from risk import codes
from risk.assess.orders import OrderKind, ProposedOrder

_SYSTEM_ALIASES = {codes.CPT_OID: codes.CPT, codes.HCPCS_OID: codes.HCPCS}
_CHEST_CT = {(c.system, c.code): c for c in (*codes.CHEST_CT_ORDER_CODES, codes.CT_CHEST)}
_SCREENING = {(c.system, c.code) for c in codes.SCREENING_ORDER_CODES}
_IGNORED_STATUS = frozenset({"revoked", "completed", "entered-in-error"})


def chest_ct_orders(draft_orders: Mapping[str, Any], as_of: date) -> list[ProposedOrder]:
    """Every chest CT ServiceRequest in the draft-orders Bundle, in Bundle order."""
    out: list[ProposedOrder] = []
    entries = draft_orders.get("entry")
    if not isinstance(entries, list):
        return out
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
            continue
        if resource.get("status") in _IGNORED_STATUS:
            continue
        matched = _match(resource.get("code"))
        if matched is None:
            continue
        rid = resource.get("id")
        reference = f"ServiceRequest/{rid}" if isinstance(rid, str) and rid else \
            str(entry.get("fullUrl") or f"ServiceRequest/#{index}")
        kind = OrderKind.SCREENING_LDCT if (matched.system, matched.code) in _SCREENING else OrderKind.CHEST_CT
        out.append(ProposedOrder(reference=reference, kind=kind, code_display=matched.display,
                                 order_date=_occurrence(resource) or as_of))
    return out


def selected(orders: Sequence[ProposedOrder], selections: Sequence[str]) -> list[ProposedOrder]:
    """The orders named in ``context.selections`` (``ServiceRequest/id``; a bare id is accepted too)."""
    wanted = set(selections) | {f"ServiceRequest/{s}" for s in selections if "/" not in s}
    return [o for o in orders if o.reference in wanted]


def draft_resource(draft_orders: Mapping[str, Any], reference: str) -> dict[str, Any] | None:
    """The draft resource named ``reference`` (to build an ``update`` action from it)."""
    for entry in draft_orders.get("entry") or ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
            return resource
    return None


def _match(concept: Any) -> codes.Code | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if not isinstance(coding, dict):
            continue
        system = coding.get("system")
        code = coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            continue
        system = _SYSTEM_ALIASES.get(system, system)
        if (system, code.strip()) in _CHEST_CT:
            return _CHEST_CT[(system, code.strip())]
    return None


def _occurrence(resource: Mapping[str, Any]) -> date | None:
    value = resource.get("occurrenceDateTime")
    if not isinstance(value, str):
        period = resource.get("occurrencePeriod")
        value = period.get("start") if isinstance(period, dict) else None
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None
