"""Targeted parsing of a CDS Hooks 2.0 service request (no FHIR model validation on the hot path).

The body is parsed once with orjson; only the fields the service uses are checked, each failure an
:class:`~risk.errors.InvalidInput` naming the field (``context.patientId``, ``fhirAuthorization.access_token``),
which the route answers with 422 and an OperationOutcome naming it (``issue[0].expression``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from risk.cds.discovery import HOOKS, REQUIRED_CONTEXT, TOKEN_CONTEXT
from risk.errors import InvalidInput

MAX_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class FhirAuthorization:
    """``fhirAuthorization``: a transient token for ``fhirServer``. Never logged, never stored."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


@dataclass(frozen=True, slots=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    patient_id: str
    user_id: str
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = None
    prefetch: Mapping[str, Any] | None = None

    @property
    def encounter_id(self) -> str | None:
        value = self.context.get("encounterId")
        return value if isinstance(value, str) and value else None

    def token_values(self) -> dict[str, str]:
        """Values for prefetch tokens: ``context.<field>`` plus the user identifier tokens."""
        out = {f"context.{k}": str(v) for k, v in self.context.items()
               if k in TOKEN_CONTEXT.get(self.hook, ()) and isinstance(v, str)}
        resource_type, _, rid = self.user_id.partition("/")
        user_token = {"Practitioner": "userPractitionerId", "PractitionerRole": "userPractitionerRoleId",
                      "Patient": "userPatientId", "RelatedPerson": "userRelatedPersonId"}.get(resource_type)
        if user_token and rid:
            out[user_token] = rid
        return out


def parse_hook_request(body: bytes, *, require_https: bool = False) -> HookRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("body", "is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("body", "must be a JSON object")
    hook = _text(data, "hook")
    if hook not in HOOKS:
        raise InvalidInput("hook", f"{hook!r} is not served here (serves {', '.join(HOOKS)})")
    hook_instance = _text(data, "hookInstance")
    context = data.get("context")
    if not isinstance(context, dict):
        raise InvalidInput("context", "is required and must be an object")
    for name in REQUIRED_CONTEXT[hook]:
        if name not in context or context[name] is None:
            raise InvalidInput(f"context.{name}", f"is required for {hook}")
    patient_id = _text(context, "patientId", "context.")
    if "/" in patient_id:
        raise InvalidInput("context.patientId", "must be a logical id (no resource type, no slash)")
    user_id = _text(context, "userId", "context.")
    if "draftOrders" in REQUIRED_CONTEXT[hook]:
        orders = context["draftOrders"]
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise InvalidInput("context.draftOrders", "must be a FHIR Bundle")
    if "selections" in REQUIRED_CONTEXT[hook]:
        selections = context["selections"]
        if not isinstance(selections, list) or not all(isinstance(s, str) and s for s in selections):
            raise InvalidInput("context.selections", "must be an array of references (ServiceRequest/id)")
    fhir_server = data.get("fhirServer")
    if fhir_server is not None:
        if not isinstance(fhir_server, str) or urlsplit(fhir_server).scheme not in ("http", "https") \
                or not urlsplit(fhir_server).netloc:
            raise InvalidInput("fhirServer", "must be an absolute http(s) URL")
        if require_https and urlsplit(fhir_server).scheme != "https":
            raise InvalidInput("fhirServer", "must use https when production data is exchanged")
    auth = _authorization(data.get("fhirAuthorization"))
    if auth is not None and fhir_server is None:
        raise InvalidInput("fhirServer", "is required when fhirAuthorization is present")
    prefetch = data.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise InvalidInput("prefetch", "must be an object")
    return HookRequest(hook=hook, hook_instance=hook_instance, context=context, patient_id=patient_id,
                       user_id=user_id, fhir_server=fhir_server, fhir_authorization=auth, prefetch=prefetch)


def _text(data: Mapping[str, Any], name: str, prefix: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{prefix}{name}", "is required and must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{prefix}{name}", f"must be at most {MAX_ID_LENGTH} characters")
    return value


def _authorization(value: Any) -> FhirAuthorization | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("fhirAuthorization", "must be an object")
    token = value.get("access_token")
    if not isinstance(token, str) or not token:
        raise InvalidInput("fhirAuthorization.access_token", "is required")
    token_type = value.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise InvalidInput("fhirAuthorization.token_type", "must be 'Bearer'")
    expires_in = value.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise InvalidInput("fhirAuthorization.expires_in", "is required and must be a number")
    scope = value.get("scope")
    if not isinstance(scope, str) or not scope:
        raise InvalidInput("fhirAuthorization.scope", "is required")
    subject = value.get("subject")
    if not isinstance(subject, str) or not subject:
        raise InvalidInput("fhirAuthorization.subject", "is required")
    patient = value.get("patient")
    if patient is not None and not isinstance(patient, str):
        raise InvalidInput("fhirAuthorization.patient", "must be a string")
    return FhirAuthorization(access_token=token, token_type=token_type, expires_in=int(expires_in), scope=scope,
                             subject=subject, patient=patient)
